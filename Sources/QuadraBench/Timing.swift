import Dispatch

/// Wall-clock timing for benchmarks: warm-up runs, then the best (minimum) of
/// several timed repetitions — the least disturbed by other work on the machine.
public enum Stopwatch {
  /// Seconds taken by one call of `body`.
  public static func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
  }

  /// The best time of `repetitions` calls after `warmup` untimed calls; repetitions continue
  /// until at least `minimumSeconds` have been spent timing (so short kernels get more samples),
  /// but stop after `maximumRepetitions` calls.
  public static func best(
    warmup: Int = 1, repetitions: Int = 3, minimumSeconds: Double = 0.2, maximumRepetitions: Int = 50,
    _ body: () throws -> Void
  ) rethrows -> Double {
    for _ in 0..<warmup { try body() }
    var best = Double.infinity
    var spent = 0.0
    var count = 0
    while count < repetitions || spent < minimumSeconds {
      let t = try seconds(body)
      best = Swift.min(best, t)
      spent += t
      count += 1
      if count >= maximumRepetitions { break }
    }
    return best
  }
}
