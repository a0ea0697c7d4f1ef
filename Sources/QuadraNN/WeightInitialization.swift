import QuadraCore

/// How the weights of convolutions and linear maps are drawn when a model is built.
/// Biases start at zero, norms at one and layer scales at their configured value in every scheme.
public enum WeightInitialization: Codable, Sendable, Equatable {
  /// timm / ConvNeXt / HorNet: a truncated normal with a fixed standard deviation (0.02),
  /// cut at ±2 — tuned for deep ImageNet models with near-zero layer scales.
  case truncatedNormal(std: Float)
  /// A truncated normal (cut at ±2σ) with σ = `gain / √fanIn` (LeCun-style), so every map starts with
  /// unit gain. Small, shallow models start learning sooner this way: with σ = 0.02 a 7×7
  /// depthwise filter (fan-in 49) starts at gain 0.14, and a quadratic term `a ⊙ b` at 0.02.
  case fanInScaled(gain: Float)

  /// The ImageNet default.
  public static let timm = WeightInitialization.truncatedNormal(std: 0.02)

  /// Allowed `std` of ``truncatedNormal(std:)``: finite, in (0, 10]. Beyond 10 almost every draw
  /// falls outside the fixed ±2 cut, which only rejection sampling would notice (by looping).
  public static let standardDeviationRange: ClosedRange<Float> = Float.leastNormalMagnitude...10
  /// Allowed `gain` of ``fanInScaled(gain:)``: finite, in (0, 100].
  public static let gainRange: ClosedRange<Float> = Float.leastNormalMagnitude...100

  /// Checks the scheme's parameter is finite and in its range (``standardDeviationRange``, ``gainRange``).
  public func validate() throws {
    switch self {
    case .truncatedNormal(let std):
      guard std.isFinite, Self.standardDeviationRange.contains(std) else {
        throw WeightInitializationError(field: "truncatedNormal.std", value: std, allowed: "(0, 10]")
      }
    case .fanInScaled(let gain):
      guard gain.isFinite, Self.gainRange.contains(gain) else {
        throw WeightInitializationError(field: "fanInScaled.gain", value: gain, allowed: "(0, 100]")
      }
    }
  }

  /// The standard deviation for a weight with `fanIn` inputs per output.
  public func standardDeviation(fanIn: Int) -> Float {
    switch self {
    case .truncatedNormal(let std): std
    case .fanInScaled(let gain): gain / Float(fanIn).squareRoot()
    }
  }

  /// The truncation bounds for a weight with standard deviation `std`.
  func bounds(std: Float) -> (lower: Float, upper: Float) {
    switch self {
    case .truncatedNormal: (-2, 2)
    case .fanInScaled: (-2 * std, 2 * std)
    }
  }
}

/// A weight-initialization parameter outside its range.
public struct WeightInitializationError: Error, Equatable, CustomStringConvertible {
  /// The JSON path of the parameter below `weightInitialization` (e.g. `fanInScaled.gain`).
  public var field: String
  public var value: Float
  /// The allowed range, as text.
  public var allowed: String

  public var description: String { "\(field): \(value) is outside the allowed range \(allowed) (finite)" }
}

extension Parameter {
  /// Inputs per output of this weight, from its engine layout.
  public var fanIn: Int {
    let shape = variable.shape
    switch torchLayout {
    case .identical, .pointwiseConvolution: return shape.count >= 2 ? shape.dropFirst().reduce(1, *) : 1
    case .convolution: return shape.dropFirst().reduce(1, *)  // [O, kh, kw, I]
    case .depthwiseConvolution: return shape.dropLast().reduce(1, *)  // [kh, kw, C]
    }
  }
}

extension Module {
  /// Redraws every weight of a convolution or linear map (the parameters that take weight decay)
  /// with `scheme`, in definition order; other parameters are left as they are.
  public func initializeWeights(_ scheme: WeightInitialization, using generator: inout RandomGenerator) {
    for (_, parameter) in namedParameters() where parameter.weightDecay {
      let std = scheme.standardDeviation(fanIn: parameter.fanIn)
      let (lower, upper) = scheme.bounds(std: std)
      parameter.variable.update(
        Tensor.truncatedNormal(shape: parameter.variable.shape, std: std, lower: lower, upper: upper, using: &generator))
    }
  }
}
