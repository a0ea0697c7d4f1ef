import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Persistent worker threads for ``Parallel``: a parallel loop wakes parked workers instead of
/// asking libdispatch for threads on every call.
///
/// Why: a training step issues hundreds of small parallel loops (LayerNorm, GELU, residual adds
/// of a few hundred microseconds each at 28×28); `DispatchQueue.concurrentPerform` costs tens of
/// microseconds per call to start and join its threads, and its threads go to sleep between
/// calls. Workers here spin briefly after each loop (the next one usually follows within
/// microseconds) and then park on a semaphore.
///
/// One loop runs at a time. A loop submitted while another runs (concurrent contexts in one
/// process, or a loop nested inside a worker's chunk) falls back to `concurrentPerform`, so the
/// pool never deadlocks and never blocks a caller behind another caller's work.
///
/// Each thread first runs its own chunk — chunk 0 the caller, chunk `w` worker `w` — then claims the
/// chunks beyond one per thread dynamically, then takes over the own chunks of threads that have not
/// started theirs (a parked worker wakes tens of microseconds late, and the loop never waits for it).
/// Why own chunks: consecutive ops split their tensors the same way (contiguous ranges in chunk order),
/// so with fixed owners each core finds the rows it wrote in its own L2 in the next op; claimed first
/// come, first served, the worker often took chunk 0 and the caller chunk 1, and each op read the
/// other core's rows. Measured on an Intel Xeon (2 cores, `bench models --models quadranet-28
/// --resolution 28 --batch-size 64 --threads 2`, alternated): see the README, Stop 37.
/// Each chunk's range is fixed by the caller, so results never depend on which thread ran what.
final class WorkerPool: @unchecked Sendable {
  /// The pool shared by the process: one worker per active core beyond the calling thread.
  static let shared = WorkerPool(workerCount: Swift.max(0, ProcessInfo.activeCoreCount - 1))

  /// Bits of ``state`` holding the next unclaimed chunk and the chunk count (chunks ≤ 2¹¹ − 1).
  private static let indexBits = 11
  private static let indexMask = (1 << indexBits) - 1
  /// The most chunks one loop may have (larger loops use `concurrentPerform`).
  static let maximumChunks = indexMask

  /// `generation << 22 | chunks << 11 | next`: claiming a chunk is one compare-and-swap that also
  /// checks the loop is still the one the claimer saw, so a late worker can never claim a chunk
  /// of the next loop with the previous loop's body.
  private let state = Atomic<Int>(0)
  /// Chunks of the current loop that finished.
  private let finished = Atomic<Int>(0)
  /// The current loop's body (`Unmanaged<Job>` bits), valid while it has unfinished chunks.
  private let job = Atomic<Int>(0)
  /// Whether a loop is running (submitters that find it set fall back to `concurrentPerform`).
  private let busy = Atomic<Bool>(false)
  /// Workers that announced they are about to park.
  private let parking = Atomic<Int>(0)
  private let wakeUp = DispatchSemaphore(value: 0)
  let workerCount: Int
  /// Per thread (the caller's first, then worker `w`'s at `w`): the last loop generation whose chunk
  /// with that index was claimed. Own chunk `i` of loop `g` is claimed by raising slot `i` to `g`;
  /// every chunk of a loop is claimed before the next loop starts, so a late thread that still
  /// sees an older generation finds its slot at or above it and claims nothing.
  private let ownClaims: [OwnClaim]

  private final class OwnClaim: Sendable {
    let generation = Atomic<Int>(0)
    /// Whether this slot's worker is parked (or about to park): its chunk may be taken over at once.
    let parked = Atomic<Bool>(false)
  }

  /// One loop's body; a class so workers can reach it through one atomic word.
  private final class Job {
    let body: (Int) -> Void
    init(_ body: @escaping (Int) -> Void) { self.body = body }
  }

  init(workerCount: Int) {
    self.workerCount = workerCount
    ownClaims = (0...workerCount).map { _ in OwnClaim() }
    for index in 0..<workerCount {
      let thread = Thread { [self] in self.workerLoop(owning: index + 1) }
      thread.name = "quadranet-worker-\(index + 1)"
      thread.start()
    }
  }

  /// Calls `body(chunk)` for every chunk in `0..<chunks` on the caller and the workers and returns
  /// when all are done; false (nothing ran) when the pool is busy or `chunks` is out of its range.
  func run(chunks: Int, _ body: (Int) -> Void) -> Bool {
    guard workerCount > 0, chunks >= 2, chunks <= Self.maximumChunks else { return false }
    guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
    defer { busy.store(false, ordering: .releasing) }
    return withoutActuallyEscaping(body) { body in
      let current = Job(body)
      withExtendedLifetime(current) {
        finished.store(0, ordering: .relaxed)
        job.store(Int(bitPattern: Unmanaged.passUnretained(current).toOpaque()), ordering: .relaxed)
        let generation = (state.load(ordering: .relaxed) >> (2 * Self.indexBits)) + 1
        // The counter starts past the own chunks.
        let owned = ownedChunks(of: chunks)
        let published = generation << (2 * Self.indexBits) | chunks << Self.indexBits | owned
        state.store(published, ordering: .sequentiallyConsistent)
        // Workers that announced parking before seeing the new loop get a permit; one that saw
        // it anyway leaves a spare permit, which only costs it one extra look at `state`.
        for _ in 0..<takeParked(atMost: chunks - 1) { wakeUp.signal() }
        runChunks(owning: 0, generation: generation, owned: owned)
        var spins = 0
        while finished.load(ordering: .acquiring) < chunks {
          spins += 1
          if spins > 64 { sched_yield() }
        }
      }
      return true
    }
  }

  /// Takes up to `limit` of the announced parkers off the count (the rest stay parked).
  private func takeParked(atMost limit: Int) -> Int {
    var current = parking.load(ordering: .sequentiallyConsistent)
    while current > 0 {
      let taken = Swift.min(current, limit)
      let (exchanged, original) = parking.compareExchange(
        expected: current, desired: current - taken, ordering: .sequentiallyConsistent)
      if exchanged { return taken }
      current = original
    }
    return 0
  }

  /// Claims the next chunk of loop `generation`, or nil when it has none left (or is over).
  private func claim(generation: Int) -> Int? {
    var current = state.load(ordering: .acquiring)
    while true {
      guard current >> (2 * Self.indexBits) == generation else { return nil }
      let next = current & Self.indexMask
      let chunks = (current >> Self.indexBits) & Self.indexMask
      guard next < chunks else { return nil }
      let (exchanged, original) = state.compareExchange(
        expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
      if exchanged { return next }
      current = original
    }
  }

  /// How many of a loop's `chunks` have an owner: one per thread (the caller and each worker), at most.
  private func ownedChunks(of chunks: Int) -> Int { Swift.min(chunks, workerCount + 1) }

  /// Claims own chunk `index` of loop `generation`; false when another thread has.
  private func claimOwn(_ index: Int, generation: Int) -> Bool {
    let slot = ownClaims[index]
    var current = slot.generation.load(ordering: .relaxed)
    while current < generation {
      let (exchanged, original) = slot.generation.compareExchange(
        expected: current, desired: generation, ordering: .acquiringAndReleasing)
      if exchanged { return true }
      current = original
    }
    return false
  }

  /// Thread `index`'s part of loop `generation`, whose first `owned` chunks have owners: its own chunk,
  /// then claimed ones, then the own chunks their owners have not started. A worker without an own
  /// chunk in this loop (more workers than chunks, as with a 2-thread context on a 16-core machine)
  /// takes over only those of parked owners: a spinning owner starts its chunk within microseconds and
  /// finds its rows in its L2, but a parked one may not be the worker the semaphore wakes.
  private func runChunks(owning index: Int, generation: Int, owned: Int) {
    guard index < owned else {
      while let chunk = claim(generation: generation) { runChunk(chunk) }
      // Chunk 0 is the caller's, which never parks (a published loop has 2 chunks at least, so 1 ≤ owned).
      for other in 1..<Swift.max(owned, 1)
      where ownClaims[other].parked.load(ordering: .relaxed) && claimOwn(other, generation: generation) {
        runChunk(other)
      }
      return
    }
    if claimOwn(index, generation: generation) { runChunk(index) }
    while let chunk = claim(generation: generation) { runChunk(chunk) }
    for other in 0..<owned where other != index && claimOwn(other, generation: generation) { runChunk(other) }
  }

  private func runChunk(_ chunk: Int) {
    let bits = job.load(ordering: .acquiring)
    guard let pointer = UnsafeRawPointer(bitPattern: bits) else { return }
    Unmanaged<Job>.fromOpaque(pointer).takeUnretainedValue().body(chunk)
    finished.add(1, ordering: .releasing)
  }

  private func workerLoop(owning index: Int) {
    var seen = 0
    while true {
      // Spin a little (≈ tens of microseconds) for the next loop, yielding the core now and then
      // so a loaded machine's other threads still run, then park.
      var spins = 0
      var generation = state.load(ordering: .acquiring) >> (2 * Self.indexBits)
      while generation == seen {
        spins += 1
        if spins < 20_000 {
          if spins & 255 == 0 { sched_yield() }
        } else {
          ownClaims[index].parked.store(true, ordering: .relaxed)
          parking.add(1, ordering: .sequentiallyConsistent)
          if state.load(ordering: .sequentiallyConsistent) >> (2 * Self.indexBits) == seen { wakeUp.wait() }
          ownClaims[index].parked.store(false, ordering: .relaxed)
          spins = 0
        }
        generation = state.load(ordering: .acquiring) >> (2 * Self.indexBits)
      }
      seen = generation
      let current = state.load(ordering: .acquiring)
      guard current >> (2 * Self.indexBits) == generation else { continue }
      let chunks = (current >> Self.indexBits) & Self.indexMask
      runChunks(owning: index, generation: generation, owned: ownedChunks(of: chunks))
    }
  }
}

extension ProcessInfo {
  /// Active cores, at least 1.
  static var activeCoreCount: Int { Swift.max(1, processInfo.activeProcessorCount) }
}
