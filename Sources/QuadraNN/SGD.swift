/// Stochastic gradient descent with momentum, as `torch.optim.SGD` with dampening 0:
///
///     d ← g + λ θ                       (coupled L2 penalty; λ only for parameters with `weightDecay`)
///     b ← μ b + d                       (b = d at the first step)
///     θ ← θ − lr · (d + μ b)            (Nesterov)
///     θ ← θ − lr · b                    (classical momentum; with μ = 0, θ ← θ − lr · d)
///
/// With momentum μ > 0 the buffers b are saved as `momentum_buffer.<parameter>`; plain SGD
/// (μ = 0) has no state.
public final class SGD: PerParameterOptimizer {
  /// The momentum buffer b of one parameter (nil for plain SGD).
  public final class MomentumBuffer: OptimizerParameterState {
    public fileprivate(set) var buffer: Tensor?

    init(_ buffer: Tensor?) { self.buffer = buffer }

    public var tensors: [Tensor] { buffer.map { [$0] } ?? [] }
  }

  public var learningRate: Float
  /// μ ∈ [0, 1).
  public let momentum: Float
  /// Nesterov momentum (needs μ > 0).
  public let nesterov: Bool
  /// λ ≥ 0 of the L2 penalty added to the gradient.
  public var weightDecay: Float
  public let storage: OptimizerStorage<MomentumBuffer>
  public var stateNames: [String] { momentum > 0 ? ["momentum_buffer"] : [] }

  /// - Throws: ``OptimizerError/invalidHyperparameter(name:value:allowed:)`` for a value out of
  ///   range, and for Nesterov momentum without momentum (as PyTorch).
  public init(
    parameters: [(name: String, parameter: Parameter)], learningRate: Float, momentum: Float = 0,
    nesterov: Bool = false, weightDecay: Float = 0
  ) throws {
    try checkHyperparameter("SGD learning rate", learningRate, in: "[0, ∞)") { $0 >= 0 }
    try checkHyperparameter("SGD momentum", momentum, in: nesterov ? "(0, 1) with Nesterov" : "[0, 1)") {
      (nesterov ? $0 > 0 : $0 >= 0) && $0 < 1
    }
    try checkHyperparameter("SGD weight decay", weightDecay, in: "[0, ∞)") { $0 >= 0 }
    storage = OptimizerStorage(parameters: parameters)
    self.learningRate = learningRate
    self.momentum = momentum
    self.nesterov = nesterov
    self.weightDecay = weightDecay
  }

  public func makeState(zerosFor shape: [Int]) -> MomentumBuffer {
    MomentumBuffer(momentum > 0 ? Tensor(zeros: shape) : nil)
  }

  public func makeState(restoring tensors: [Tensor]) -> MomentumBuffer {
    MomentumBuffer(tensors.first)
  }

  public func applyUpdate(
    to parameter: inout Tensor, gradient: Tensor, state: MomentumBuffer, appliesWeightDecay: Bool
  ) {
    let decay = appliesWeightDecay ? weightDecay : 0
    if state.buffer != nil {
      Tensor.sgdStep(
        parameter: &parameter, gradient: gradient, momentumBuffer: &state.buffer!, learningRate: learningRate,
        momentum: momentum, weightDecay: decay, nesterov: nesterov)
    } else {
      Tensor.sgdStep(parameter: &parameter, gradient: gradient, learningRate: learningRate, weightDecay: decay)
    }
  }
}
