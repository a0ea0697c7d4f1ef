import Foundation

/// A group of cooperating processes (or threads) for data-parallel training: its members are
/// numbered `0 ..< size`, and every collective operation must be called by all of them, in the
/// same order, with buffers of the same length.
///
/// Implementations: ``InProcessCommunicator`` (threads of one process; testing and the
/// in-process benchmarks) and, in builds with the `MPI` trait, `MPICommunicator` (Open MPI).
public protocol Communicator: AnyObject {
  /// This member's index, `0 ..< size`; rank 0 is the one that writes files.
  var rank: Int { get }
  /// How many members take part.
  var size: Int { get }
  /// Replaces `buffer` on every member by the elementwise sum over all members' buffers
  /// (s_i = Σ_r x_i^(r)); every member receives the same bits.
  func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
  /// Copies `root`'s `buffer` into every other member's buffer (same length everywhere).
  func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws
  /// Every member's `bytes` (any lengths), in rank order.
  func allGather(_ bytes: [UInt8]) throws -> [[UInt8]]
  /// Ends the whole group because this member failed with `message`: with MPI the job is killed
  /// (`MPI_Abort`) and this call does not return; in process, the other members' pending and
  /// later collectives throw ``CommunicatorError/aborted(rank:message:)``.
  func abort(message: String)
}

/// Why a collective failed.
public enum CommunicatorError: Error, CustomStringConvertible, LocalizedError, Equatable {
  /// Another member aborted the group with this message.
  case aborted(rank: Int, message: String)
  /// Members called a collective with different buffer lengths (a bug or a configuration mismatch).
  case lengthMismatch(operation: String, lengths: [Int])
  /// The members were started with different configurations (the fields that differ, per rank).
  case configurationMismatch(String)
  /// An underlying library call failed.
  case library(String)
  /// A distributed run was asked for but cannot be set up.
  case unavailable(String)

  public var description: String {
    switch self {
    case .aborted(let rank, let message): return "rank \(rank) aborted the job: \(message)"
    case .lengthMismatch(let operation, let lengths):
      return "\(operation): the ranks passed buffers of different lengths \(lengths)"
    case .configurationMismatch(let text): return "the ranks were started with different configurations: \(text)"
    case .library(let text): return text
    case .unavailable(let text): return text
    }
  }

  public var errorDescription: String? { description }
}

extension Communicator {
  /// ``allReduceSum(_:)`` of an array.
  public func allReduceSum(_ values: [Float]) throws -> [Float] {
    var values = values
    try values.withUnsafeMutableBufferPointer { try allReduceSum($0) }
    return values
  }

  /// Sums of `values` over all members, added in rank order in `Double` (exact for counts, and the
  /// same on every member).
  public func sumInRankOrder(_ values: [Double]) throws -> [Double] {
    let gathered = try allGather(values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) })
    var sums = [Double](repeating: 0, count: values.count)
    for (rank, bytes) in gathered.enumerated() {
      guard bytes.count == values.count * 8 else {
        throw CommunicatorError.lengthMismatch(operation: "sumInRankOrder (rank \(rank))", lengths: gathered.map(\.count))
      }
      for index in sums.indices {
        var bits: UInt64 = 0
        for byte in 0..<8 { bits |= UInt64(bytes[index * 8 + byte]) << (8 * byte) }
        sums[index] += Double(bitPattern: UInt64(littleEndian: bits))
      }
    }
    return sums
  }

  /// Throws ``CommunicatorError/configurationMismatch(_:)`` unless every member passes the same
  /// `description` (a canonical text of everything that must agree: recipe, model, data, position).
  /// Only a 64-bit FNV-1a hash travels; the message lists which ranks differ from rank 0.
  public func checkSameConfiguration(_ description: String, what: String) throws {
    let hash = FNV1a.hash(Array(description.utf8))
    let gathered = try allGather(withUnsafeBytes(of: hash.littleEndian, Array.init))
    let differing = gathered.indices.filter { gathered[$0] != gathered[0] }
    guard differing.isEmpty else {
      throw CommunicatorError.configurationMismatch(
        "\(what) of rank(s) \(differing.map(String.init).joined(separator: ", ")) differ(s) from rank 0's"
          + " (this rank, \(rank), has: \(description.prefix(2000)))")
    }
  }

  /// The contiguous share of `count` items that this member takes: `[⌊r·n/N⌋, ⌊(r+1)·n/N⌋)`.
  /// Shares differ in size by at most one and cover `0 ..< count` exactly once.
  public func shard(of count: Int) -> Range<Int> { Self.shard(of: count, rank: rank, size: size) }

  public static func shard(of count: Int, rank: Int, size: Int) -> Range<Int> {
    (rank * count / size)..<((rank + 1) * count / size)
  }
}

/// 64-bit FNV-1a, a stable (not randomly seeded, unlike `Hasher`) hash for comparing data across processes.
public enum FNV1a {
  public static func hash<Bytes: Sequence>(_ bytes: Bytes, into state: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64
  where Bytes.Element == UInt8 {
    var state = state
    for byte in bytes { state = (state ^ UInt64(byte)) &* 0x100_0000_01b3 }
    return state
  }
}
