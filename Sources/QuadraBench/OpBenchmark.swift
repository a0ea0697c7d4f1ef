import Foundation
import QuadraCore

/// One timed pass (forward or backward) of one op case.
public struct OpBenchResult: Codable, Sendable {
  public var op: String
  public var variant: String
  /// `forward` or `backward`.
  public var pass: String
  /// Best wall-clock time of one call.
  public var seconds: Double
  /// Floating-point operations per second / 10⁹, for compute-bound passes (else nil).
  public var gflops: Double?
  /// Bytes read and written per second / 10⁹ (inputs, outputs and gradients counted once).
  public var gigabytesPerSecond: Double

  enum CodingKeys: String, CodingKey {
    case op, variant, pass, seconds, gflops
    case gigabytesPerSecond = "gigabytes_per_second"
  }
}

/// The report of `quadranet bench ops`.
public struct OpBenchReport: Codable, Sendable {
  public var backend: String
  public var threads: Int
  public var scale: String
  public var results: [OpBenchResult]
}

/// Times the cases of ``BackendOpCatalog`` on one backend, like ggml's `test-backend-ops perf`.
public enum OpBenchmark {
  /// Errors in the benchmark's arguments (the message names the flag and what is allowed).
  public struct ArgumentError: Error, CustomStringConvertible {
    public var description: String
  }

  /// - Parameters:
  ///   - backendName: a name from ``Backends/all``.
  ///   - ops: op families to run (empty: all); each must be one of ``BackendOpCatalog/opNames``.
  ///   - variant: text the cases' variant (their shapes, as printed) must contain (empty: every case); a profile
  ///     of one shape needs the others out of the way.
  ///   - threads: threads for the CPU kernels (≥ 1).
  ///   - repetitions: timed calls per pass (≥ 1; the best is reported).
  ///   - progress: receives one formatted line per measured pass.
  public static func run(
    backendName: String, ops: [String] = [], variant: String = "", threads: Int, scale: BackendOpCatalog.Scale = .large,
    repetitions: Int = 3, progress: (String) -> Void = { _ in }
  ) throws -> OpBenchReport {
    guard let backend = Backends.named(backendName) else {
      throw ArgumentError(
        description: "--backend: unknown backend \"\(backendName)\"; choose one of \(Backends.all.map(\.name))")
    }
    guard threads >= 1 else { throw ArgumentError(description: "--threads must be at least 1, got \(threads)") }
    guard repetitions >= 1 else {
      throw ArgumentError(description: "repetitions must be at least 1, got \(repetitions)")
    }
    let known = BackendOpCatalog.opNames
    if let unknown = ops.first(where: { !known.contains($0) }) {
      throw ArgumentError(description: "--ops: unknown op \"\(unknown)\"; choose from \(known.joined(separator: ","))")
    }
    let cases = BackendOpCatalog.cases(scale).filter {
      (ops.isEmpty || ops.contains($0.op)) && (variant.isEmpty || $0.variant.contains(variant))
    }
    guard variant.isEmpty || !cases.isEmpty else {
      throw ArgumentError(description: "--variant: no \(scale.rawValue) case of the chosen ops has a variant containing \"\(variant.prefix(200))\"")
    }
    var results: [OpBenchResult] = []
    Parallel.withThreadCount(threads) {
      Backends.withCurrent(backend) {
        for opCase in cases {
          let inputs = opCase.makeInputs().map { $0.moved(to: backend.device) }
          var outputs: [Tensor] = []
          let forward = Stopwatch.best(warmup: 1, repetitions: repetitions, minimumSeconds: 0) {
            outputs = opCase.forward(inputs)
          }
          let inputBytes = Double(inputs.map(\.count).reduce(0, +) * 4)
          let outputBytes = Double(outputs.map(\.count).reduce(0, +) * 4)
          results.append(
            result(opCase, pass: "forward", seconds: forward, flops: opCase.forwardFLOPs, bytes: inputBytes + outputBytes))
          progress(line(results.last!))
          guard let stagedBackward = opCase.stagedBackward else { continue }
          // What the pullback needs from a forward pass (statistics, saved activations) is computed
          // untimed: the timed calls are the backward pass alone, as a training step runs it.
          let backward = stagedBackward(inputs)
          var generator = RandomGenerator(seed: 7)
          let gradients = outputs.map {
            Tensor.uniform(shape: $0.shape, lower: -1, upper: 1, using: &generator).moved(to: backend.device)
          }
          var inputGradients: [Tensor] = []
          let seconds = Stopwatch.best(warmup: 1, repetitions: repetitions, minimumSeconds: 0) {
            inputGradients = backward(gradients)
          }
          let gradientBytes = Double(inputGradients.map(\.count).reduce(0, +) * 4)
          // A backward pass costs about twice the forward's arithmetic (one product per gradient).
          results.append(
            result(
              opCase, pass: "backward", seconds: seconds, flops: 2 * opCase.forwardFLOPs,
              bytes: inputBytes + outputBytes + gradientBytes))
          progress(line(results.last!))
        }
      }
    }
    return OpBenchReport(backend: backend.name, threads: threads, scale: scale.rawValue, results: results)
  }

  static func result(_ opCase: BackendOpCase, pass: String, seconds: Double, flops: Double, bytes: Double)
    -> OpBenchResult
  {
    OpBenchResult(
      op: opCase.op, variant: opCase.variant, pass: pass, seconds: seconds,
      gflops: flops > 0 ? flops / seconds / 1e9 : nil, gigabytesPerSecond: bytes / seconds / 1e9)
  }

  /// `op  variant  pass  time  rate`, aligned for a terminal.
  public static func line(_ r: OpBenchResult) -> String {
    let rate = r.gflops.map { String(format: "%9.2f GFLOP/s", $0) } ?? String(format: "%9.2f GB/s   ", r.gigabytesPerSecond)
    return r.op.padding(toLength: 25, withPad: " ", startingAt: 0)
      + r.variant.padding(toLength: 48, withPad: " ", startingAt: 0)
      + r.pass.padding(toLength: 9, withPad: " ", startingAt: 0)
      + String(format: "%10.3f ms ", r.seconds * 1000) + rate
  }
}
