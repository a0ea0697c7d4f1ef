import Foundation

/// A ``Communicator`` whose members are threads of one process: it makes the data-parallel logic
/// testable without MPI. ``makeGroup(size:)`` returns one communicator per member; each must be
/// used from its own thread. Collectives exchange through shared slots between two barriers;
/// sums are taken in rank order, so every member gets the same bits.
public final class InProcessCommunicator: Communicator, @unchecked Sendable {
  public let rank: Int
  public var size: Int { world.size }
  private let world: World

  private init(rank: Int, world: World) {
    self.rank = rank
    self.world = world
  }

  /// One communicator per member of a new group of `size` members (1...1024).
  public static func makeGroup(size: Int) throws -> [InProcessCommunicator] {
    guard (1...1024).contains(size) else {
      throw CommunicatorError.unavailable("in-process group size must be in 1...1024, got \(size)")
    }
    let world = World(size: size)
    return (0..<size).map { InProcessCommunicator(rank: $0, world: world) }
  }

  public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
    let all = try world.exchange(rank: rank, Array(buffer))
    let lengths = all.map(\.count)
    guard Set(lengths).count == 1 else {
      try world.barrier()
      throw CommunicatorError.lengthMismatch(operation: "allReduceSum", lengths: lengths)
    }
    for index in buffer.indices {
      var sum: Float = 0
      for contribution in all { sum += contribution[index] }
      buffer[index] = sum
    }
    try world.barrier()
  }

  public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws {
    let all = try world.exchange(rank: rank, rank == root ? Array(buffer) : [Float](repeating: 0, count: buffer.count))
    guard all[root].count == buffer.count else {
      try world.barrier()
      throw CommunicatorError.lengthMismatch(operation: "broadcast", lengths: all.map(\.count))
    }
    for index in buffer.indices { buffer[index] = all[root][index] }
    try world.barrier()
  }

  public func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] {
    let all = try world.exchange(rank: rank, bytes)
    try world.barrier()
    return all
  }

  public func abort(message: String) { world.abort(rank: rank, message: message) }

  /// Shared state of a group: one slot per member and a generation-counting barrier.
  private final class World: @unchecked Sendable {
    let size: Int
    private let condition = NSCondition()
    private var slots: [Any]
    private var arrived = 0
    private var generation = 0
    private var aborted: CommunicatorError?

    init(size: Int) {
      self.size = size
      slots = [Any](repeating: (), count: size)
    }

    /// Deposits `value`, waits for all members, and returns everyone's values (valid until the next barrier).
    func exchange<Value>(rank: Int, _ value: Value) throws -> [Value] {
      condition.lock()
      slots[rank] = value
      condition.unlock()
      try barrier()
      condition.lock()
      defer { condition.unlock() }
      return slots.map { $0 as! Value }
    }

    func barrier() throws {
      condition.lock()
      defer { condition.unlock() }
      if let aborted { throw aborted }
      let myGeneration = generation
      arrived += 1
      if arrived == size {
        arrived = 0
        generation += 1
        condition.broadcast()
        return
      }
      while generation == myGeneration && aborted == nil { condition.wait() }
      if generation == myGeneration, let aborted { throw aborted }
    }

    func abort(rank: Int, message: String) {
      condition.lock()
      if aborted == nil { aborted = .aborted(rank: rank, message: message) }
      condition.broadcast()
      condition.unlock()
    }
  }
}
