import Foundation
import Synchronization

/// Everything a computation needs from its surroundings: how many threads kernels may use, which
/// ``MemoryTracker`` counts the tensors it allocates, and which ``Backend`` computes the ops.
///
/// A context replaces process-wide mutable settings: each task runs in its own (task-local)
/// ``current`` context, so two models can train or be measured concurrently in one process, each
/// with its own thread count and exact memory peaks.
///
/// ```swift
/// let context = try ComputeContext(threads: 4)
/// let (loss, peak) = context.measurePeak { model(batch).softmaxCrossEntropy(labels: labels) }
/// ```
///
/// Contexts are immutable; derive variants with ``with(threads:)``, ``with(memory:)`` and
/// ``with(backend:)``. Task-local values do not reach the workers
/// of `DispatchQueue.concurrentPerform`: code that dispatches reads what it needs from ``current``
/// first, or wraps the worker in ``run(_:)``.
public final class ComputeContext: Sendable {
  /// The largest accepted ``threadCount``: more would only add dispatch overhead and, for
  /// ``PeakFLOPS``, start that many OS threads.
  public static let maximumThreadCount = 1024

  /// Threads kernels may use (1...``maximumThreadCount``).
  public let threadCount: Int
  /// Counts the tensor memory allocated while this context is current.
  public let memory: MemoryTracker
  /// Computes the ops on tensors of its ``Backend/device`` (``CPUBackend`` by default); tensors on
  /// other devices use their device's default backend (see ``Backends/backend(for:)``).
  public let backend: any Backend

  /// Creates a context.
  ///
  /// - Parameters:
  ///   - threads: threads for the kernels, 1...``maximumThreadCount``; defaults to all active cores.
  ///   - memory: the tracker for tensors allocated in this context; defaults to a fresh one.
  /// - Throws: ``ComputeContextError/threadCountOutOfRange(_:)`` when `threads` is out of range.
  ///   - backend: the backend for the ops; defaults to ``CPUBackend``.
  public convenience init(
    threads: Int = ProcessInfo.processInfo.activeProcessorCount, memory: MemoryTracker = MemoryTracker(),
    backend: any Backend = CPUBackend()
  ) throws(ComputeContextError) {
    guard (1...Self.maximumThreadCount).contains(threads) else {
      throw .threadCountOutOfRange(threads)
    }
    self.init(validatedThreads: threads, memory: memory, backend: backend)
  }

  /// The memberwise initializer behind ``init(threads:memory:)`` and the `with…` copies; its
  /// arguments are already validated.
  private init(validatedThreads: Int, memory: MemoryTracker, backend: any Backend) {
    self.threadCount = validatedThreads
    self.memory = memory
    self.backend = backend
  }

  /// The context of code that never chose one: all active cores and a process-wide tracker.
  public static let processDefault = ComputeContext(
    validatedThreads: Swift.min(Swift.max(ProcessInfo.processInfo.activeProcessorCount, 1), maximumThreadCount),
    memory: MemoryTracker(), backend: CPUBackend())

  /// The context of the running task (``processDefault`` unless a caller set one with ``run(_:)``).
  @TaskLocal public static var current: ComputeContext = processDefault

  /// The same context with another thread count (same memory tracker).
  ///
  /// - Throws: ``ComputeContextError/threadCountOutOfRange(_:)`` when `threads` is outside
  ///   1...``maximumThreadCount``.
  public func with(threads: Int) throws(ComputeContextError) -> ComputeContext {
    try ComputeContext(threads: threads, memory: memory, backend: backend)
  }

  /// The same context with another memory tracker (same thread count).
  public func with(memory: MemoryTracker) -> ComputeContext {
    ComputeContext(validatedThreads: threadCount, memory: memory, backend: backend)
  }

  /// The same context computing with another backend (same threads and tracker).
  public func with(backend: any Backend) -> ComputeContext {
    ComputeContext(validatedThreads: threadCount, memory: memory, backend: backend)
  }

  /// Runs `body` with this context as ``current``.
  public func run<R>(_ body: () throws -> R) rethrows -> R {
    try ComputeContext.$current.withValue(self, operation: body)
  }

  /// Runs the asynchronous `body` (and the child tasks it starts) with this context as ``current``.
  public func run<R>(
    isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> R
  ) async rethrows -> R {
    try await ComputeContext.$current.withValue(self, operation: body, isolation: isolation)
  }

  /// Runs `body` in this context and returns its result with the peak bytes of tensors it allocated
  /// on top of what this context's tracker held before (see ``MemoryTracker/measurePeak(_:)``).
  public func measurePeak<R>(_ body: () throws -> R) rethrows -> (result: R, peakBytes: Int) {
    try run { try memory.measurePeak(body) }
  }
}

/// Why a ``ComputeContext`` could not be created.
public enum ComputeContextError: Error, Equatable, CustomStringConvertible {
  /// The thread count is outside 1...``ComputeContext/maximumThreadCount``.
  case threadCountOutOfRange(Int)

  public var description: String {
    switch self {
    case .threadCountOutOfRange(let threads):
      "thread count must be in 1...\(ComputeContext.maximumThreadCount), got \(threads)"
    }
  }
}

extension ComputeContextError: LocalizedError {
  public var errorDescription: String? { description }
}

/// Counts the bytes of live tensors, like PyTorch's `torch.cuda.memory_allocated` /
/// `max_memory_allocated`, for the computations of the contexts that use it.
///
/// A ``TensorBuffer`` records the tracker of the context current when it was allocated and
/// reports its release to that same tracker, whichever thread or context frees it, so the counts
/// stay exact while other contexts allocate concurrently.
public final class MemoryTracker: Sendable {
  private struct Counters {
    var liveBytes = 0
    var peakBytes = 0
    var allocationCount = 0
  }

  private let counters = Mutex(Counters())

  public init() {}

  /// Bytes held by live tensors of this tracker right now.
  public var liveBytes: Int { counters.withLock { $0.liveBytes } }
  /// The largest value ``liveBytes`` reached since the last ``resetPeak()``.
  public var peakBytes: Int { counters.withLock { $0.peakBytes } }
  /// Tensor allocations recorded so far (pool hits included).
  public var allocationCount: Int { counters.withLock { $0.allocationCount } }

  /// Starts a new peak measurement from the current live bytes.
  public func resetPeak() {
    counters.withLock { $0.peakBytes = $0.liveBytes }
  }

  /// Runs `body` with this tracker counting its tensors and returns the peak live bytes reached
  /// on top of what was live before: `max(live during body) − live before`.
  ///
  /// `body` runs in ``ComputeContext/current`` with this tracker installed, so the measurement is
  /// exact even while other contexts allocate. Measurements nest: when `body` returns, the
  /// tracker's ``peakBytes`` is the larger of the enclosing and the inner peak, so an outer
  /// measurement still sees the inner allocations.
  public func measurePeak<R>(_ body: () throws -> R) rethrows -> (result: R, peakBytes: Int) {
    let (base, enclosingPeak) = counters.withLock { counters in
      defer { counters.peakBytes = counters.liveBytes }
      return (counters.liveBytes, counters.peakBytes)
    }
    defer { counters.withLock { $0.peakBytes = Swift.max($0.peakBytes, enclosingPeak) } }
    let result = try run(body)
    return (result, peakBytes - base)
  }

  /// Runs `body` in ``ComputeContext/current`` with this tracker counting the tensors it allocates.
  public func run<R>(_ body: () throws -> R) rethrows -> R {
    let context = ComputeContext.current
    return try (context.memory === self ? context : context.with(memory: self)).run(body)
  }

  func recordAllocation(byteCount: Int) {
    counters.withLock { counters in
      counters.allocationCount += 1
      counters.liveBytes += byteCount
      counters.peakBytes = Swift.max(counters.peakBytes, counters.liveBytes)
    }
  }

  func recordRelease(byteCount: Int) {
    counters.withLock { $0.liveBytes -= byteCount }
  }
}
