import Foundation

/// Times ``Communicator/allReduceSum(_:)`` over message sizes (every rank must run it with the same sizes).
public enum AllReduceBenchmark {
  /// One message size's result.
  public struct Result: Codable, Sendable, Equatable {
    /// Message size in bytes (float32 elements × 4).
    public var bytes: Int
    /// Timed all-reduces.
    public var iterations: Int
    /// Mean seconds per all-reduce on rank 0.
    public var seconds: Double
    /// Algorithm bandwidth, bytes / seconds, in GB/s (10⁹ B/s).
    public var algorithmGBps: Double
    /// Bus bandwidth, 2(N−1)/N × bytes / seconds, in GB/s: what each link carries in a ring all-reduce,
    /// comparable across rank counts (as nccl-tests report it).
    public var busGBps: Double
  }

  /// The report: ranks and one result per size.
  public struct Report: Codable, Sendable, Equatable {
    public var ranks: Int
    public var results: [Result]
  }

  /// Accepted message sizes, in bytes: 4 B (one float) to 1 GiB.
  public static let sizeRange = 4...(1 << 30)

  /// Runs the benchmark: per size, 2 untimed warm-up all-reduces, then `iterations` timed ones, where
  /// `iterations` = clamp(256 MiB / size, 3, 1000) (the same on every rank, so all ranks call the
  /// same collectives). Sizes are rounded down to whole floats.
  public static func run(
    sizes: [Int], over communicator: any Communicator, progress: (Result) -> Void = { _ in }
  ) throws -> Report {
    var results: [Result] = []
    for size in sizes {
      let count = Swift.max(size / 4, 1)
      let iterations = Swift.min(Swift.max((256 << 20) / (count * 4), 3), 1000)
      // Zeros stay zeros however often they are summed (no overflow, no denormals).
      var buffer = [Float](repeating: 0, count: count)
      let seconds = try buffer.withUnsafeMutableBufferPointer { values -> Double in
        for _ in 0..<2 { try communicator.allReduceSum(values) }
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<iterations { try communicator.allReduceSum(values) }
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(iterations)
      }
      let bytes = Double(count * 4)
      let ranks = Double(communicator.size)
      let result = Result(
        bytes: count * 4, iterations: iterations, seconds: seconds, algorithmGBps: bytes / seconds / 1e9,
        busGBps: 2 * (ranks - 1) / ranks * bytes / seconds / 1e9)
      results.append(result)
      progress(result)
    }
    return Report(ranks: communicator.size, results: results)
  }

  /// Parses a size list like `4K,256K,1M,25M` (suffixes K, M, G: powers of 1024; plain numbers are bytes).
  public static func parseSizes(_ text: String) throws -> [Int] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    guard !parts.isEmpty, parts.count <= 64 else {
      throw CommunicatorError.unavailable("--sizes: give 1...64 comma-separated sizes, got \(parts.count)")
    }
    return try parts.map { part in
      let multipliers: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
      var digits = Substring(part)
      var multiplier = 1
      if let last = digits.last?.uppercased().first, let factor = multipliers[last] {
        multiplier = factor
        digits = digits.dropLast()
      }
      guard let value = Int(digits), value > 0, value <= sizeRange.upperBound / multiplier,
        sizeRange.contains(value * multiplier)
      else {
        throw CommunicatorError.unavailable(
          "--sizes: '\(part)' is not a size in 4...1073741824 bytes (suffixes K, M, G allowed, e.g. 4K,1M,25M)")
      }
      return value * multiplier
    }
  }
}
