import Dispatch
import Foundation
import Synchronization

/// Measures the floating-point peak of this machine, the yardstick for kernel efficiency.
///
/// Each thread runs a loop of fused multiply-adds on 12 independent vector accumulators, more than
/// (FMA latency × FMA pipes) needs, so the loop is bound by FMA throughput alone and touches no
/// memory. One multiply-add counts as two floating-point operations:
///
///     GFLOP/s = Σ_threads iterations × 12 accumulators × lanes × 2 / wall-clock seconds / 10⁹
///
/// The loop runs with `SIMD8<Float>` (AVX2 / 256-bit) and `SIMD16<Float>` (AVX-512) accumulators
/// and the faster one counts, so the widest vector unit the build can use is measured. All threads
/// start together behind a barrier and stop together, and every rate is their total work over a
/// common wall-clock span: more threads than cores cannot inflate it, and a thread that was
/// scheduled late only lowers it. The rate is the best of the whole run and of its short windows
/// (milliseconds, each a lower bound), and several repeats are taken and the best kept, because
/// other work on the machine can only make a run slower.
public enum PeakFLOPS {
  /// The largest accepted `seconds` per timed run.
  public static let maximumSeconds = 60.0
  /// The largest accepted number of repeats.
  public static let maximumRepeats = 100

  /// The best of the measured runs.
  public struct Measurement: Sendable, Equatable {
    /// The highest rate seen, in GFLOP/s summed over all threads.
    public var gflops: Double
    /// Lanes of the accumulator vectors of the best run (8 or 16).
    public var vectorWidth: Int
    /// Threads that ran at once.
    public var threads: Int
  }

  /// Runs the FMA loop on `threads` threads at once, `repeats` times for each vector width, each
  /// run lasting about `seconds`, and returns the best aggregate rate.
  ///
  /// - Parameters:
  ///   - threads: threads running at once, 1...``ComputeContext/maximumThreadCount``.
  ///   - seconds: length of one timed run, in (0, ``maximumSeconds``].
  ///   - repeats: timed runs per vector width, 1...``maximumRepeats``.
  /// - Throws: ``PeakFLOPSError`` naming the out-of-range argument.
  public static func measure(threads: Int, seconds: Double = 0.25, repeats: Int = 3) throws(PeakFLOPSError)
    -> Measurement
  {
    guard (1...ComputeContext.maximumThreadCount).contains(threads) else { throw .threadsOutOfRange(threads) }
    guard seconds > 0, seconds <= maximumSeconds else { throw .secondsOutOfRange(seconds) }
    guard (1...maximumRepeats).contains(repeats) else { throw .repeatsOutOfRange(repeats) }
    var best = Measurement(gflops: 0, vectorWidth: 8, threads: threads)
    for _ in 0..<repeats {
      for width in [8, 16] {
        let gflops =
          width == 16
          ? aggregateRate(lanes: 16, threads: threads, seconds: seconds) { fmaLoop(SIMD16<Float>.self, $0) }
          : aggregateRate(lanes: 8, threads: threads, seconds: seconds) { fmaLoop(SIMD8<Float>.self, $0) }
        if gflops > best.gflops { best = Measurement(gflops: gflops, vectorWidth: width, threads: threads) }
      }
    }
    return best
  }

  /// Operands the optimizer cannot see through (read under a lock), so the loop cannot be folded away.
  private static let opaqueOperands = Mutex((scale: Float(0.999_999), offset: Float(1e-7)))
  /// Receives the accumulators' sums so the computation has an observable result.
  private static let sink = Mutex(Float(0))

  /// Iterations per call of the FMA loop: a few microseconds of work, so stop requests are seen
  /// promptly and the completed-batch count is a fine-grained clock of the work done.
  private static let batch = 1 << 12

  /// State shared by the coordinator and the workers of one run.
  private final class Run: Sendable {
    let ready = Atomic<Int>(0)
    let started = Atomic<Bool>(false)
    let stopped = Atomic<Bool>(false)
    /// Batches finished by all workers together.
    let completedBatches = Atomic<Int>(0)
    let finished = DispatchGroup()
  }

  /// Arguments of one call of the FMA loop.
  private struct LoopArguments {
    var iterations: Int
    var scale: Float
    var offset: Float
    var start: Float
  }

  /// One reading of the completed-batch count, between two clock readings.
  private struct Sample {
    var before: UInt64
    var batches: Int
    var after: UInt64
  }

  /// GFLOP/s of `threads` FMA loops (`loop`, on vectors of `lanes` floats) started together and
  /// stopped together after about `seconds`.
  ///
  /// Returns the larger of the whole run's average and the best short window. Other processes
  /// on a shared machine take cores away for milliseconds at a time; the best window is the rate
  /// while they did not, which is what a short kernel timed as the best of several runs sees.
  /// Each window's rate is a lower bound: it counts only the batches that finished inside it,
  /// less one per thread (a batch may have started before the window), over a span that includes
  /// both readings.
  private static func aggregateRate(
    lanes: Int, threads: Int, seconds: Double, _ loop: @escaping @Sendable (LoopArguments) -> Float
  ) -> Double {
    let run = Run()
    for _ in 0..<threads {
      run.finished.enter()
      let worker = Thread {
        let operands = opaqueOperands.withLock { $0 }
        run.ready.add(1, ordering: .releasing)
        while !run.started.load(ordering: .acquiring) { sched_yield() }
        var calls = 0
        var sum: Float = 0
        repeat {
          // Each call starts from a different value: identical calls to a function without side
          // effects could otherwise be merged into one.
          let start = Float(calls % 16) * 0.01
          sum += loop(LoopArguments(iterations: batch, scale: operands.scale, offset: operands.offset, start: start))
          calls += 1
          run.completedBatches.add(1, ordering: .relaxed)
        } while !run.stopped.load(ordering: .relaxed)
        sink.withLock { $0 += sum }
        run.finished.leave()
      }
      worker.start()
    }
    while run.ready.load(ordering: .acquiring) < threads { usleep(100) }
    // Long enough that the one-batch-per-thread allowance stays a small fraction of a window.
    let window = Swift.max(0.002, Double(threads) * 0.000_2)
    let start = DispatchTime.now().uptimeNanoseconds
    run.started.store(true, ordering: .releasing)
    var samples = [Sample(before: start, batches: 0, after: start)]
    let deadline = start + UInt64(seconds * 1e9)
    repeat {
      Thread.sleep(forTimeInterval: window)
      let before = DispatchTime.now().uptimeNanoseconds
      let batches = run.completedBatches.load(ordering: .relaxed)
      samples.append(Sample(before: before, batches: batches, after: DispatchTime.now().uptimeNanoseconds))
    } while samples[samples.count - 1].after < deadline
    run.stopped.store(true, ordering: .relaxed)
    run.finished.wait()
    let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9

    let flopsPerBatch = Double(batch * 12 * lanes * 2)
    let average = Double(run.completedBatches.load(ordering: .relaxed)) * flopsPerBatch / elapsed
    let bestWindow = zip(samples, samples.dropFirst()).map { first, second in
      Double(second.batches - first.batches - threads) * flopsPerBatch
        / (Double(second.after - first.before) * 1e-9)
    }.max() ?? 0
    return Swift.max(average, bestWindow) * 1e-9
  }

  @inline(never)
  private static func fmaLoop<V: PeakFLOPSVector>(_: V.Type, _ arguments: LoopArguments) -> Float {
    let x = V(repeating: arguments.scale)
    let y = V(repeating: arguments.offset)
    let start = arguments.start
    var a0 = V(repeating: start), a1 = V(repeating: start + 0.1), a2 = V(repeating: start + 0.2)
    var a3 = V(repeating: start + 0.3), a4 = V(repeating: start + 0.4), a5 = V(repeating: start + 0.5)
    var a6 = V(repeating: start + 0.6), a7 = V(repeating: start + 0.7), a8 = V(repeating: start + 0.8)
    var a9 = V(repeating: start + 0.9), a10 = V(repeating: start + 1.0), a11 = V(repeating: start + 1.1)
    // a ← y + x·a stays bounded (|x| < 1), so the values never overflow or go denormal.
    for _ in 0..<arguments.iterations {
      a0 = V.multiplyAdd(y, x, a0)
      a1 = V.multiplyAdd(y, x, a1)
      a2 = V.multiplyAdd(y, x, a2)
      a3 = V.multiplyAdd(y, x, a3)
      a4 = V.multiplyAdd(y, x, a4)
      a5 = V.multiplyAdd(y, x, a5)
      a6 = V.multiplyAdd(y, x, a6)
      a7 = V.multiplyAdd(y, x, a7)
      a8 = V.multiplyAdd(y, x, a8)
      a9 = V.multiplyAdd(y, x, a9)
      a10 = V.multiplyAdd(y, x, a10)
      a11 = V.multiplyAdd(y, x, a11)
    }
    return [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11].reduce(Float(0)) { $0 + $1.sum() }
  }
}

/// Why ``PeakFLOPS/measure(threads:seconds:repeats:)`` refused its arguments.
public enum PeakFLOPSError: Error, Equatable, CustomStringConvertible {
  case threadsOutOfRange(Int)
  case secondsOutOfRange(Double)
  case repeatsOutOfRange(Int)

  public var description: String {
    switch self {
    case .threadsOutOfRange(let threads):
      "PeakFLOPS.measure: threads must be in 1...\(ComputeContext.maximumThreadCount), got \(threads)"
    case .secondsOutOfRange(let seconds):
      "PeakFLOPS.measure: seconds must be in (0, \(PeakFLOPS.maximumSeconds)], got \(seconds)"
    case .repeatsOutOfRange(let repeats):
      "PeakFLOPS.measure: repeats must be in 1...\(PeakFLOPS.maximumRepeats), got \(repeats)"
    }
  }
}

extension PeakFLOPSError: LocalizedError {
  public var errorDescription: String? { description }
}

/// A float vector with a concrete multiply-add, so the generic FMA loop compiles to the same
/// instructions as a loop written for one width.
protocol PeakFLOPSVector: SIMD where Scalar == Float {
  /// `acc + a · b` per lane (fused when the build targets the host CPU).
  static func multiplyAdd(_ acc: Self, _ a: Self, _ b: Self) -> Self
}

extension SIMD8: PeakFLOPSVector where Scalar == Float {
  @inline(__always)
  static func multiplyAdd(_ acc: Self, _ a: Self, _ b: Self) -> Self {
    QuadraCore.multiplyAdd(acc, a, b)
  }
}

extension SIMD16: PeakFLOPSVector where Scalar == Float {
  @inline(__always)
  static func multiplyAdd(_ acc: Self, _ a: Self, _ b: Self) -> Self {
    #if QUADRANET_PORTABLE
      return acc + a * b
    #else
      return acc.addingProduct(a, b)
    #endif
  }
}
