import Dispatch
import Foundation

/// Splits kernel work across threads.
///
/// The thread count comes from the running task's ``ComputeContext`` (``ComputeContext/current``),
/// so concurrent tasks can use different counts; kernels read ``threadCount`` when they start.
/// Work is split into at most ``threadCount`` contiguous chunks so each thread touches its own memory.
public enum Parallel {
  /// Threads kernels may use (≥ 1): the current context's ``ComputeContext/threadCount``.
  public static var threadCount: Int { ComputeContext.current.threadCount }

  /// Runs `body` in a copy of the current context whose thread count is `threads` (same memory tracker).
  ///
  /// For thread counts fixed in code (tests, sweeps). `threads` must be in
  /// 1...``ComputeContext/maximumThreadCount``, or this stops the process with that message; a
  /// count that comes from user input goes through the throwing ``ComputeContext/with(threads:)``.
  public static func withThreadCount<R>(_ threads: Int, _ body: () throws -> R) rethrows -> R {
    let context: ComputeContext
    do {
      context = try ComputeContext.current.with(threads: threads)
    } catch {
      opPrecondition(false, "Parallel.withThreadCount: \(error)")
      return try body()  // unreachable: opPrecondition(false, …) stops the process
    }
    return try context.run(body)
  }

  /// Calls `body(range)` for contiguous sub-ranges covering `0..<count`, in parallel.
  ///
  /// `minimumChunk` keeps tiny loops on one thread, where dispatch would cost more than the work.
  /// The chunks run on the persistent ``WorkerPool`` threads and the caller (see there). The chunk
  /// boundaries depend only on `count` and the chunk count, `min(threadCount, count / minimumChunk)`.
  /// The workers run in the caller's context (task-local values do not cross into
  /// `DispatchQueue.concurrentPerform` by themselves), so tensors they allocate are charged to
  /// the caller's tracker.
  public static func forRanges(_ count: Int, minimumChunk: Int = 1, _ body: (Range<Int>) -> Void) {
    guard count > 0 else { return }
    let context = ComputeContext.current
    let chunks = Swift.min(context.threadCount, Swift.max(1, count / Swift.max(minimumChunk, 1)))
    if chunks <= 1 {
      body(0..<count)
      return
    }
    // Kernels capture raw pointers, which are not Sendable; each chunk writes a disjoint range.
    nonisolated(unsafe) let work = body
    let needsContext = context !== ComputeContext.processDefault
    @Sendable func runChunk(_ chunk: Int) {
      let start = count * chunk / chunks
      let end = count * (chunk + 1) / chunks
      guard start < end else { return }
      if needsContext {
        context.run { work(start..<end) }
      } else {
        work(start..<end)
      }
    }
    // The persistent workers first; when another loop holds them (concurrent contexts, nesting),
    // libdispatch's threads.
    if !WorkerPool.shared.run(chunks: chunks, runChunk) {
      DispatchQueue.concurrentPerform(iterations: chunks, execute: runChunk)
    }
  }

  /// Calls `body(i)` for every `i` in `0..<count`, spread over the threads in contiguous chunks.
  public static func forEach(_ count: Int, minimumChunk: Int = 1, _ body: (Int) -> Void) {
    forRanges(count, minimumChunk: minimumChunk) { range in
      for i in range { body(i) }
    }
  }
}
