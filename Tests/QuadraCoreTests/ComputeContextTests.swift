import Foundation
import Synchronization
import Testing

@testable import QuadraCore

@Suite struct ComputeContextTests {
  @Test func threadCountOutsideTheRangeThrows() {
    #expect(throws: ComputeContextError.threadCountOutOfRange(0)) { try ComputeContext(threads: 0) }
    #expect(throws: ComputeContextError.threadCountOutOfRange(-3)) { try ComputeContext(threads: -3) }
    let tooMany = ComputeContext.maximumThreadCount + 1
    #expect(throws: ComputeContextError.threadCountOutOfRange(tooMany)) { try ComputeContext(threads: tooMany) }
    #expect("\(ComputeContextError.threadCountOutOfRange(0))".contains("1...\(ComputeContext.maximumThreadCount)"))
  }

  @Test func copiesChangeOneFieldAndKeepTheOther() throws {
    let memory = MemoryTracker()
    let context = try ComputeContext(threads: 3, memory: memory)
    let wider = try context.with(threads: 5)
    #expect(wider.threadCount == 5 && wider.memory === memory)
    let other = MemoryTracker()
    let retracked = context.with(memory: other)
    #expect(retracked.threadCount == 3 && retracked.memory === other)
  }

  @Test func runSetsTheCurrentContextAndRestoresIt() throws {
    let outer = ComputeContext.current
    let context = try ComputeContext(threads: 3)
    context.run {
      #expect(ComputeContext.current === context)
      #expect(Parallel.threadCount == 3)
      Parallel.withThreadCount(2) {
        #expect(Parallel.threadCount == 2)
        // withThreadCount keeps the memory tracker.
        #expect(ComputeContext.current.memory === context.memory)
      }
      #expect(Parallel.threadCount == 3)
    }
    #expect(ComputeContext.current === outer)
  }

  @Test func withThreadCountOutOfRangeStopsWithTheRange() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      Parallel.withThreadCount(0) {}
    }
    let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(message.contains("must be in 1...\(ComputeContext.maximumThreadCount), got 0"))
  }

  /// Concurrent tasks, each in its own context, see only their own thread count, also inside the
  /// workers of `Parallel.forRanges` (where task-locals do not reach by themselves).
  @Test func threadCountDoesNotLeakBetweenConcurrentTasks() async throws {
    let contexts = try (1...4).map { try ComputeContext(threads: $0) }
    let seen = await withTaskGroup(of: (Int, Set<Int>).self) { group in
      for context in contexts {
        group.addTask {
          context.run {
            let observed = Mutex(Set<Int>())
            for _ in 0..<200 {
              observed.withLock { _ = $0.insert(Parallel.threadCount) }
              Parallel.forRanges(64) { _ in observed.withLock { _ = $0.insert(Parallel.threadCount) } }
            }
            return (context.threadCount, observed.withLock { $0 })
          }
        }
      }
      var all: [(Int, Set<Int>)] = []
      for await entry in group { all.append(entry) }
      return all
    }
    #expect(seen.count == contexts.count)
    for (threads, observed) in seen { #expect(observed == [threads]) }
  }

  /// Two contexts allocating at the same time (both hold their tensors at once) each measure
  /// exactly their own peak; a release on another thread is charged to the allocating tracker.
  @Test func concurrentContextsMeasureExactPeaks() throws {
    let first = try ComputeContext(threads: 1), second = try ComputeContext(threads: 1)
    let bothAllocated = DispatchGroup()
    bothAllocated.enter()
    bothAllocated.enter()
    let finished = DispatchGroup()
    let peaks = Locked([Int](repeating: -1, count: 2))
    let overlapped = Locked(0)
    for (index, (context, floats)) in [(first, 1 << 18), (second, 3 << 18)].enumerated() {
      finished.enter()
      Thread {
        let (_, peak) = context.measurePeak {
          let big = Tensor(zeros: [floats])
          var small = Tensor(zeros: [floats / 4])
          bothAllocated.leave()
          // Hold the tensors until the other context has allocated too (bounded wait).
          if bothAllocated.wait(timeout: .now() + 10) == .success { overlapped.withLock { $0 += 1 } }
          small = Tensor(zeros: [1])
          withExtendedLifetime((big, small)) {}
        }
        peaks.withLock { $0[index] = peak }
        finished.leave()
      }.start()
    }
    #expect(finished.wait(timeout: .now() + 30) == .success)
    #expect(overlapped.withLock { $0 } == 2)
    // big + small + the 1-float tensor (allocated while small was still alive).
    let expected = [(1 << 18) + (1 << 16) + 1, (3 << 18) + (3 << 16) + 1].map { $0 * 4 }
    #expect(peaks.withLock { $0 } == expected)
    #expect(first.memory.liveBytes == 0 && second.memory.liveBytes == 0)
    #expect(first.memory.allocationCount == 3 && second.memory.allocationCount == 3)

    // Allocated in `first`, released while `second` is current on another thread.
    let handOff = Locked<Tensor?>(first.run { Tensor(zeros: [1000]) })
    #expect(first.memory.liveBytes == 4000)
    let released = DispatchGroup()
    released.enter()
    Thread {
      second.run { handOff.withLock { $0 = nil } }
      released.leave()
    }.start()
    #expect(released.wait(timeout: .now() + 10) == .success)
    #expect(first.memory.liveBytes == 0)
    #expect(second.memory.liveBytes == 0)
  }

  /// Tensors allocated by `Parallel.forRanges` workers count in the caller's context.
  @Test func workerAllocationsAreChargedToTheCallersContext() throws {
    let memory = MemoryTracker()
    let context = try ComputeContext(threads: 4, memory: memory)
    let peak = context.measurePeak {
      Parallel.forRanges(4) { range in
        for _ in range { withExtendedLifetime(Tensor(zeros: [256])) {} }
      }
    }.peakBytes
    #expect(memory.allocationCount == 4)
    #expect(peak >= 1024 && peak <= 4 * 1024)
    #expect(memory.liveBytes == 0)
  }

  /// An inner measurement does not erase the peak an enclosing one is tracking.
  @Test func peakMeasurementsNest() {
    let memory = MemoryTracker()
    let (inner, outer) = memory.measurePeak { () -> Int in
      do { withExtendedLifetime(memory.run { Tensor(zeros: [1000]) }) {} }
      return memory.measurePeak { withExtendedLifetime(Tensor(zeros: [10])) {} }.peakBytes
    }
    #expect(inner == 40)
    #expect(outer == 4000)
    #expect(memory.peakBytes == 4000)
  }
}

/// A mutex-protected value that escaping closures (threads) can share.
final class Locked<Value: Sendable>: Sendable {
  private let mutex: Mutex<Value>

  init(_ value: Value) { mutex = Mutex(value) }

  func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}
