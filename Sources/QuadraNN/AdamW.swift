import Foundation

/// Adam with decoupled weight decay (Loshchilov & Hutter), as `torch.optim.AdamW`; at step t:
///
///     θ ← θ · (1 − lr·λ)                       (only parameters with `weightDecay`)
///     m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²
///     θ ← θ − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
///
/// The moments are tensors from the tracking allocator, so they count toward peak memory
/// exactly as in PyTorch; they are saved as `exp_avg.<parameter>` and `exp_avg_sq.<parameter>`.
public final class AdamW: PerParameterOptimizer {
  /// The moments m and v of one parameter.
  public final class Moments: OptimizerParameterState {
    public fileprivate(set) var firstMoment: Tensor
    public fileprivate(set) var secondMoment: Tensor

    init(firstMoment: Tensor, secondMoment: Tensor) {
      self.firstMoment = firstMoment
      self.secondMoment = secondMoment
    }

    public var tensors: [Tensor] { [firstMoment, secondMoment] }
  }

  public var learningRate: Float
  /// β₁ ∈ [0, 1): decay of the first moment.
  public var beta1: Float
  /// β₂ ∈ [0, 1): decay of the second moment.
  public var beta2: Float
  /// ε > 0 added to the denominator.
  public var epsilon: Float
  /// λ ≥ 0 of the decoupled weight decay.
  public var weightDecay: Float
  public let storage: OptimizerStorage<Moments>
  public var stateNames: [String] { ["exp_avg", "exp_avg_sq"] }

  /// - Throws: ``OptimizerError/invalidHyperparameter(name:value:allowed:)`` for a value out of range.
  public init(
    parameters: [(name: String, parameter: Parameter)], learningRate: Float = 1e-3, beta1: Float = 0.9,
    beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0.05
  ) throws {
    try checkHyperparameter("AdamW learning rate", learningRate, in: "[0, ∞)") { $0 >= 0 }
    try checkHyperparameter("AdamW beta1", beta1, in: "[0, 1)") { $0 >= 0 && $0 < 1 }
    try checkHyperparameter("AdamW beta2", beta2, in: "[0, 1)") { $0 >= 0 && $0 < 1 }
    try checkHyperparameter("AdamW epsilon", epsilon, in: "(0, ∞)") { $0 > 0 }
    try checkHyperparameter("AdamW weight decay", weightDecay, in: "[0, ∞)") { $0 >= 0 }
    storage = OptimizerStorage(parameters: parameters)
    self.learningRate = learningRate
    self.beta1 = beta1
    self.beta2 = beta2
    self.epsilon = epsilon
    self.weightDecay = weightDecay
  }

  public func makeState(zerosFor shape: [Int]) -> Moments {
    Moments(firstMoment: Tensor(zeros: shape), secondMoment: Tensor(zeros: shape))
  }

  public func makeState(restoring tensors: [Tensor]) -> Moments {
    Moments(firstMoment: tensors[0], secondMoment: tensors[1])
  }

  /// Whether ``Optimizer/update()`` updates all parameters in one multi-tensor step
  /// (``QuadraCore/Tensor/adamWSteps(_:)``: the same bits, the elements of all tensors split across the
  /// threads together) rather than one tensor at a time. True by default; false for comparisons.
  public var usesMultiTensorStep = true

  /// This step's constants (``Optimizer/step`` is the new count), as `torch.optim.AdamW` computes them.
  private func stepConstants(appliesWeightDecay: Bool) -> AdamWStep {
    let t = Float(step)
    let correction1 = 1 - pow(beta1, t)
    let correction2 = 1 - pow(beta2, t)
    return AdamWStep(
      beta1: beta1, beta2: beta2, epsilon: epsilon, stepSize: learningRate / correction1,
      inverseRootSecondCorrection: 1 / correction2.squareRoot(),
      parameterScale: appliesWeightDecay ? 1 - learningRate * weightDecay : 1)
  }

  public func applyUpdate(to parameter: inout Tensor, gradient: Tensor, state: Moments, appliesWeightDecay: Bool) {
    let c = stepConstants(appliesWeightDecay: appliesWeightDecay)
    Tensor.adamWStep(
      parameter: &parameter, gradient: gradient, firstMoment: &state.firstMoment, secondMoment: &state.secondMoment,
      beta1: c.beta1, beta2: c.beta2, epsilon: c.epsilon, stepSize: c.stepSize,
      inverseRootSecondCorrection: c.inverseRootSecondCorrection, parameterScale: c.parameterScale)
  }

  public func applyUpdates(_ updates: [ParameterUpdate<Moments>]) {
    guard usesMultiTensorStep else { return applyEachUpdate(updates) }
    let steps = (decayed: stepConstants(appliesWeightDecay: true), plain: stepConstants(appliesWeightDecay: false))
    // Storage of their own first (a checkpoint being written may share it), for all of them before any
    // copy is taken: the step writes through the copies in `batch`, which then share it with these owners
    // only (a parameter listed twice shares one storage, and the step applies both updates in turn).
    for update in updates {
      update.variable.updateValueInPlace { $0.isolateStorage() }
      update.state.firstMoment.isolateStorage()
      update.state.secondMoment.isolateStorage()
    }
    var batch: [AdamWUpdate] = []
    batch.reserveCapacity(updates.count)
    for update in updates {
      batch.append(
        AdamWUpdate(
          step: update.appliesWeightDecay ? steps.decayed : steps.plain, parameter: update.variable.value,
          gradient: update.gradient, firstMoment: update.state.firstMoment, secondMoment: update.state.secondMoment))
    }
    Tensor.adamWSteps(batch)
  }
}
