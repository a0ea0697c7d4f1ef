import Dispatch
import Foundation

/// Measures the floating-point peak of this machine, the yardstick for kernel efficiency.
///
/// Each thread runs a loop of fused multiply-adds on 12 independent `SIMD8<Float>` accumulators,
/// more than (FMA latency × FMA pipes) needs, so the loop is bound by FMA throughput alone and
/// touches no memory. One multiply-add counts as two floating-point operations.
public enum PeakFLOPS {
  /// GFLOP/s of `threads` copies of the FMA loop running for about `seconds` each, summed.
  public static func measure(threads: Int, seconds: Double = 0.3) -> Double {
    opPrecondition(threads >= 1, "PeakFLOPS.measure: threads must be at least 1, got \(threads)")
    opPrecondition(seconds > 0, "PeakFLOPS.measure: seconds must be positive, got \(seconds)")
    if threads == 1 { return singleThread(seconds: seconds) }
    let lock = NSLock()
    nonisolated(unsafe) var total = 0.0
    DispatchQueue.concurrentPerform(iterations: threads) { _ in
      let rate = singleThread(seconds: seconds)
      lock.withLock { total += rate }
    }
    return total
  }

  /// Values that the optimizer cannot see through, so the loop cannot be folded away.
  nonisolated(unsafe) private static var opaqueScale: Float = 0.999_999
  nonisolated(unsafe) private static var opaqueOffset: Float = 1e-7
  /// Receives the accumulators' sum so the computation has an observable result.
  nonisolated(unsafe) private static var sink: Float = 0

  private static func singleThread(seconds: Double) -> Double {
    let batch = 1 << 16
    let start = DispatchTime.now().uptimeNanoseconds
    var elapsed = 0.0
    var iterations = 0
    var sum: Float = 0
    repeat {
      // Each call starts from a different value: identical calls to a function without side
      // effects could otherwise be merged into one.
      sum += fmaLoop(iterations: batch, start: Float(iterations / batch % 16) * 0.01)
      iterations += batch
      elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
    } while elapsed < seconds
    sink += sum
    // 12 accumulators × 8 lanes × 2 flops per iteration.
    return Double(iterations) * 12 * 8 * 2 / elapsed * 1e-9
  }

  @inline(never)
  private static func fmaLoop(iterations: Int, start: Float) -> Float {
    typealias V = SIMD8<Float>
    let x = V(repeating: opaqueScale)
    let y = V(repeating: opaqueOffset)
    let s = V(repeating: start)
    var a0 = s, a1 = s + 0.1, a2 = s + 0.2, a3 = s + 0.3, a4 = s + 0.4, a5 = s + 0.5
    var a6 = s + 0.6, a7 = s + 0.7, a8 = s + 0.8, a9 = s + 0.9, a10 = s + 1.0, a11 = s + 1.1
    // a ← y + x·a stays bounded (|x| < 1), so the values never overflow or go denormal.
    for _ in 0..<iterations {
      a0 = multiplyAdd(y, x, a0)
      a1 = multiplyAdd(y, x, a1)
      a2 = multiplyAdd(y, x, a2)
      a3 = multiplyAdd(y, x, a3)
      a4 = multiplyAdd(y, x, a4)
      a5 = multiplyAdd(y, x, a5)
      a6 = multiplyAdd(y, x, a6)
      a7 = multiplyAdd(y, x, a7)
      a8 = multiplyAdd(y, x, a8)
      a9 = multiplyAdd(y, x, a9)
      a10 = multiplyAdd(y, x, a10)
      a11 = multiplyAdd(y, x, a11)
    }
    let total = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11))
    return total.sum()
  }
}
