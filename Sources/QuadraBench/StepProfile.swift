import QuadraAutograd
import QuadraModels
import QuadraNN

/// Where a training step's time goes: per phase and backend primitive, calls, milliseconds,
/// share of the step and achieved GFLOP/s or GB/s (`quadranet bench models --profile`).
///
/// All numbers are per step (totals over the profiled steps divided by their count).
/// `share = primitive time / step time`; the shares of all rows plus ``unattributedShare`` sum
/// to 1, where the unattributed rest is the time spent outside backend primitives (building the
/// autograd graph, the backward traversal, Swift reference counting, the benchmark's own loop).
public struct StepProfile: Codable, Sendable, Equatable {
  /// One primitive in one phase.
  public struct Row: Codable, Sendable, Equatable {
    public var phase: ProfilingBackend.Phase
    public var primitive: String
    /// Calls per step.
    public var calls: Double
    /// Milliseconds per step.
    public var milliseconds: Double
    /// Fraction of the step's wall time.
    public var share: Double
    /// Achieved GFLOP/s (nominal operations over time), 0 for data movement.
    public var gigaflopsPerSecond: Double
    /// Achieved GB/s (nominal bytes read and written over time).
    public var gigabytesPerSecond: Double

    enum CodingKeys: String, CodingKey {
      case phase, primitive, calls, milliseconds, share
      case gigaflopsPerSecond = "gflops_per_second"
      case gigabytesPerSecond = "gigabytes_per_second"
    }
  }

  /// Profiled steps (their mean is reported).
  public var steps: Int
  /// Mean wall time of a profiled step, milliseconds.
  public var stepMilliseconds: Double
  /// Milliseconds per step of each phase (forward, backward, optimizer), primitives and the rest.
  public var phaseMilliseconds: [String: Double]
  public var rows: [Row]

  /// The part of the step spent outside backend primitives: `1 − Σ share`.
  public var unattributedShare: Double { 1 - rows.reduce(0) { $0 + $1.share } }

  enum CodingKeys: String, CodingKey {
    case steps, rows
    case stepMilliseconds = "step_milliseconds"
    case phaseMilliseconds = "phase_milliseconds"
  }

  /// The profile of `steps` steps that took `stepSeconds` in all, from the profiler's totals.
  public init(entries: [ProfilingBackend.Entry], steps: Int, stepSeconds: Double, phaseSeconds: [String: Double]) {
    let perStep = 1 / Double(Swift.max(steps, 1))
    self.steps = steps
    self.stepMilliseconds = stepSeconds * perStep * 1e3
    self.phaseMilliseconds = phaseSeconds.mapValues { $0 * perStep * 1e3 }
    self.rows = entries.map { entry in
      Row(
        phase: entry.phase, primitive: entry.primitive, calls: Double(entry.calls) * perStep,
        milliseconds: entry.seconds * perStep * 1e3, share: stepSeconds > 0 ? entry.seconds / stepSeconds : 0,
        gigaflopsPerSecond: entry.gigaflopsPerSecond, gigabytesPerSecond: entry.gigabytesPerSecond)
    }
  }

  /// Runs `steps` training steps of `model` with every backend primitive timed, each step split
  /// into forward (model and loss), backward and optimizer (update and zeroing the gradients).
  ///
  /// The profiler is installed only around these steps, in a copy of the current context.
  public static func measure(
    steps: Int, model: VisionModel, images: Tensor, labels: [Int], optimizer: some Optimizer
  ) throws -> StepProfile {
    let context = ComputeContext.current
    let profiler = ProfilingBackend(wrapping: context.backend)
    var phaseSeconds: [String: Double] = [:]
    var total = 0.0
    try context.with(backend: profiler).run {
      for _ in 0..<steps {
        var loss: Variable?
        let forward = Stopwatch.seconds {
          profiler.recording(.forward) {
            loss = model(Variable(images)).softmaxCrossEntropy(labels: labels, labelSmoothing: 0.1)
          }
        }
        let backward = try Stopwatch.seconds { try profiler.recording(.backward) { try loss?.backward() } }
        let update = Stopwatch.seconds {
          profiler.recording(.optimizer) {
            optimizer.update()
            model.zeroGradients()
          }
        }
        loss = nil
        phaseSeconds["forward", default: 0] += forward
        phaseSeconds["backward", default: 0] += backward
        phaseSeconds["optimizer", default: 0] += update
        total += forward + backward + update
      }
    }
    return StepProfile(entries: profiler.entries, steps: steps, stepSeconds: total, phaseSeconds: phaseSeconds)
  }
}
