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
/// Chunks are claimed dynamically by whichever thread is free (the caller takes part), but each
/// chunk's range is fixed by the caller, so results never depend on which thread ran what.
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

  /// One loop's body; a class so workers can reach it through one atomic word.
  private final class Job {
    let body: (Int) -> Void
    init(_ body: @escaping (Int) -> Void) { self.body = body }
  }

  init(workerCount: Int) {
    self.workerCount = workerCount
    for index in 0..<workerCount {
      let thread = Thread { [self] in self.workerLoop() }
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
        let published = generation << (2 * Self.indexBits) | chunks << Self.indexBits
        state.store(published, ordering: .sequentiallyConsistent)
        // Workers that announced parking before seeing the new loop get a permit; one that saw
        // it anyway leaves a spare permit, which only costs it one extra look at `state`.
        for _ in 0..<takeParked(atMost: chunks - 1) { wakeUp.signal() }
        while let chunk = claim(generation: generation) { runChunk(chunk) }
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

  private func runChunk(_ chunk: Int) {
    let bits = job.load(ordering: .acquiring)
    guard let pointer = UnsafeRawPointer(bitPattern: bits) else { return }
    Unmanaged<Job>.fromOpaque(pointer).takeUnretainedValue().body(chunk)
    finished.add(1, ordering: .releasing)
  }

  private func workerLoop() {
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
          parking.add(1, ordering: .sequentiallyConsistent)
          if state.load(ordering: .sequentiallyConsistent) >> (2 * Self.indexBits) == seen { wakeUp.wait() }
          spins = 0
        }
        generation = state.load(ordering: .acquiring) >> (2 * Self.indexBits)
      }
      seen = generation
      while let chunk = claim(generation: generation) { runChunk(chunk) }
    }
  }
}

extension ProcessInfo {
  /// Active cores, at least 1.
  static var activeCoreCount: Int { Swift.max(1, processInfo.activeProcessorCount) }
}
