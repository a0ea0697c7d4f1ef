import Foundation

/// A small, fast, seedable generator (SplitMix64 seeding a xoshiro256**).
///
/// Every random choice in the engine (initialization, dropout/drop-path,
/// shuffling, augmentation) draws from one of these, so a seed reproduces a run.
/// Its full state is four words, which checkpoints store to resume exactly.
public struct RandomGenerator: RandomNumberGenerator, Sendable, Codable, Equatable {
  public var state: [UInt64]

  public init(seed: UInt64) {
    var s = seed
    func splitMix() -> UInt64 {
      s &+= 0x9E37_79B9_7F4A_7C15
      var z = s
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
    state = [splitMix(), splitMix(), splitMix(), splitMix()]
  }

  public mutating func next() -> UInt64 {
    let result = ((state[1] &* 5) << 7 | (state[1] &* 5) >> 57) &* 9
    let t = state[1] << 17
    state[2] ^= state[0]
    state[3] ^= state[1]
    state[1] ^= state[2]
    state[0] ^= state[3]
    state[2] ^= t
    state[3] = (state[3] << 45) | (state[3] >> 19)
    return result
  }

  /// `count` distinct integers of `0..<upperBound` in random order (a partial Fisher–Yates shuffle).
  public mutating func distinctIndices(_ count: Int, below upperBound: Int) -> [Int] {
    precondition(0 <= count && count <= upperBound, "distinctIndices: \(count) of \(upperBound)")
    var indices = Array(0..<upperBound)
    for i in 0..<count { indices.swapAt(i, i + Int(next() % UInt64(upperBound - i))) }
    return Array(indices.prefix(count))
  }

  /// Uniform in [0, 1).
  public mutating func nextUniform() -> Float {
    Float(next() >> 40) * (1.0 / Float(1 << 24))
  }

  /// Standard normal (Box–Muller).
  public mutating func nextNormal() -> Float {
    let u1 = Swift.max(Double(next() >> 11) * (1.0 / Double(1 << 53)), Double.leastNonzeroMagnitude)
    let u2 = Double(next() >> 11) * (1.0 / Double(1 << 53))
    return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
  }
}

extension Tensor {
  /// Draws of the rejection sampler in ``truncatedNormal(shape:std:lower:upper:using:)`` before it gives up on a value.
  public static let truncatedNormalAttempts = 64

  /// Samples from N(0, std²) truncated to [lower, upper] (absolute bounds, as `timm`'s
  /// `trunc_normal_(std=.02)`, whose defaults are a = -2, b = 2), by rejection.
  ///
  /// Rejection is bounded: after ``truncatedNormalAttempts`` draws outside the interval (probability
  /// below 1e-19 when the interval holds ≥ 50% of the mass, as every validated initialization does)
  /// the last draw is clamped into `[lower, upper]`, so a degenerate interval (std 1e30, NaN bounds,
  /// `lower > upper`) cannot loop forever; it yields `lower`/`upper` (or NaN for a NaN std) instead.
  public static func truncatedNormal(
    shape: [Int], std: Float = 0.02, lower: Float = -2, upper: Float = 2,
    using generator: inout RandomGenerator
  ) -> Tensor {
    // Drawn on the host in order (the sequence defines the values), then copied to the tensor. The
    // rejection loop is bounded (a huge std or inverted bounds must not hang); the rare value still
    // outside after the last attempt is clamped.
    let values = (0..<shape.reduce(1, *)).map { _ -> Float in
      var v = generator.nextNormal() * std
      var attempts = 1
      while (v < lower || v > upper) && attempts < truncatedNormalAttempts {
        v = generator.nextNormal() * std
        attempts += 1
      }
      return Swift.max(Swift.min(v, upper), lower)
    }
    return Tensor(shape: shape, scalars: values)
  }

  /// Uniform samples in [lower, upper).
  public static func uniform(
    shape: [Int], lower: Float = 0, upper: Float = 1, using generator: inout RandomGenerator
  ) -> Tensor {
    let values = (0..<shape.reduce(1, *)).map { _ in lower + (upper - lower) * generator.nextUniform() }
    return Tensor(shape: shape, scalars: values)
  }

  /// Standard-normal samples scaled by `std`.
  public static func normal(shape: [Int], std: Float = 1, using generator: inout RandomGenerator) -> Tensor {
    let values = (0..<shape.reduce(1, *)).map { _ in generator.nextNormal() * std }
    return Tensor(shape: shape, scalars: values)
  }
}
