import Dispatch
import Foundation

/// Splits kernel work across threads.
///
/// ``threadCount`` defaults to all cores and is set once by the CLI (`--threads`)
/// or by benchmarks; kernels read it when they start. Work is split into at most
/// ``threadCount`` contiguous chunks so each thread touches its own memory.
public enum Parallel {
  nonisolated(unsafe) private static var _threadCount = ProcessInfo.processInfo.activeProcessorCount

  /// Threads kernels may use (≥ 1).
  public static var threadCount: Int {
    get { _threadCount }
    set {
      opPrecondition(newValue >= 1, "Parallel.threadCount must be at least 1, got \(newValue)")
      _threadCount = newValue
    }
  }

  /// Runs `body` with the thread count temporarily set to `threads`.
  public static func withThreadCount<R>(_ threads: Int, _ body: () throws -> R) rethrows -> R {
    let saved = threadCount
    threadCount = threads
    defer { threadCount = saved }
    return try body()
  }

  /// Calls `body(range)` for contiguous sub-ranges covering `0..<count`, in parallel.
  ///
  /// `minimumChunk` keeps tiny loops on one thread, where dispatch would cost more than the work.
  public static func forRanges(_ count: Int, minimumChunk: Int = 1, _ body: (Range<Int>) -> Void) {
    guard count > 0 else { return }
    let chunks = Swift.min(threadCount, Swift.max(1, count / Swift.max(minimumChunk, 1)))
    if chunks <= 1 {
      body(0..<count)
      return
    }
    // Kernels capture raw pointers, which are not Sendable; each chunk writes a disjoint range.
    nonisolated(unsafe) let work = body
    DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
      let start = count * chunk / chunks
      let end = count * (chunk + 1) / chunks
      if start < end { work(start..<end) }
    }
  }

  /// Calls `body(i)` for every `i` in `0..<count`, spread over the threads in contiguous chunks.
  public static func forEach(_ count: Int, minimumChunk: Int = 1, _ body: (Int) -> Void) {
    forRanges(count, minimumChunk: minimumChunk) { range in
      for i in range { body(i) }
    }
  }
}
