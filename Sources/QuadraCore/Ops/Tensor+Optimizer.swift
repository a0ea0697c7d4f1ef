// Tensor-level parameter updates for the optimizers, the weight average and gradient clipping.
//
// They mutate their `inout` tensors in place: a tensor whose storage nobody else shares is
// updated without any allocation (storage that is shared is copied first, as for every
// in-place tensor operation). Optimizers keep their state in storage they alone hold, so a
// training step allocates nothing here.

extension Tensor {
  private static func checkSameShape(_ tensors: [(name: String, shape: [Int])], op: String) {
    let expected = tensors[0].shape
    for tensor in tensors.dropFirst() {
      opPrecondition(
        tensor.shape == expected,
        "\(op): \(tensor.name) has shape \(tensor.shape), \(tensors[0].name) has \(expected)")
    }
  }

  /// One AdamW step on every element, in place:
  ///
  ///     m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²
  ///     θ ← θ · parameterScale − stepSize · m / (√v · inverseRootSecondCorrection + ε)
  ///
  /// With `stepSize = lr / (1 − β₁ᵗ)`, `inverseRootSecondCorrection = 1 / √(1 − β₂ᵗ)` and
  /// `parameterScale = 1 − lr·λ` (1 without weight decay) this is `torch.optim.AdamW` at step t.
  ///
  /// - Parameters:
  ///   - parameter: θ, updated in place.
  ///   - gradient: g, same shape.
  ///   - firstMoment: m, same shape, updated in place.
  ///   - secondMoment: v, same shape, updated in place.
  public static func adamWStep(
    parameter: inout Tensor, gradient: Tensor, firstMoment: inout Tensor, secondMoment: inout Tensor,
    beta1: Float, beta2: Float, epsilon: Float, stepSize: Float, inverseRootSecondCorrection: Float,
    parameterScale: Float
  ) {
    checkSameShape(
      [("parameter", parameter.shape), ("gradient", gradient.shape), ("first moment", firstMoment.shape),
       ("second moment", secondMoment.shape)], op: "adamWStep")
    let backend = Backends.backend(op: "adamWStep", parameter, gradient, firstMoment, secondMoment)
    parameter.makeStorageUnique()
    firstMoment.makeStorageUnique()
    secondMoment.makeStorageUnique()
    backend.adamWStep(
      AdamWStep(
        beta1: beta1, beta2: beta2, epsilon: epsilon, stepSize: stepSize,
        inverseRootSecondCorrection: inverseRootSecondCorrection, parameterScale: parameterScale),
      parameter: parameter, gradient: gradient, firstMoment: firstMoment, secondMoment: secondMoment)
  }

  /// ``adamWStep(parameter:gradient:firstMoment:secondMoment:beta1:beta2:epsilon:stepSize:inverseRootSecondCorrection:parameterScale:)``
  /// on several parameters in one call, each with its own constants (weight decay differs between them): the
  /// same bits as one call per update, but the CPU backend splits the elements of all of them across its
  /// threads together, where a small model's tensors are each too small to be split (quadranet-28's 128
  /// tensors hold 0.39 M parameters).
  ///
  /// It writes through the storage of each update's `parameter`, `firstMoment` and `secondMoment`, which
  /// the copies in `updates` share with their owners: the owners give their tensors storage of their own
  /// first (``isolateStorage()``), so that no other tensor sees the writes.
  public static func adamWSteps(_ updates: [AdamWUpdate]) {
    guard !updates.isEmpty else { return }
    for update in updates {
      checkSameShape(
        [("parameter", update.parameter.shape), ("gradient", update.gradient.shape),
         ("first moment", update.firstMoment.shape), ("second moment", update.secondMoment.shape)],
        op: "adamWSteps")
    }
    let backend = Backends.backend(op: "adamWSteps", updates.flatMap(\.tensors))
    // Updates that write the same storage (a parameter listed twice) must run one after the other, as
    // separate steps would: threads splitting them together would race.
    let written = updates.flatMap { [$0.parameter, $0.firstMoment, $0.secondMoment] }.map { ObjectIdentifier($0.buffer) }
    guard Set(written).count == written.count else { return backend.adamWStepsInTurn(updates) }
    backend.adamWSteps(updates)
  }

  /// Gives this tensor storage of its own if another tensor shares it (a copy, as every in-place
  /// operation makes first), for in-place updates that write through copies of it (``adamWSteps(_:)``).
  public mutating func isolateStorage() { makeStorageUnique() }

  /// One step of SGD with momentum, in place, as `torch.optim.SGD` with dampening 0:
  ///
  ///     d ← g + λ θ
  ///     b ← μ b + d
  ///     θ ← θ − lr · (d + μ b)   (Nesterov)   or   θ ← θ − lr · b
  ///
  /// A zero-initialized buffer makes the first step `b = d`, as PyTorch's first step does.
  ///
  /// - Parameters:
  ///   - parameter: θ, updated in place.
  ///   - gradient: g, same shape.
  ///   - momentumBuffer: b, same shape, updated in place.
  ///   - weightDecay: λ of the coupled L2 penalty added to the gradient.
  public static func sgdStep(
    parameter: inout Tensor, gradient: Tensor, momentumBuffer: inout Tensor, learningRate: Float, momentum: Float,
    weightDecay: Float, nesterov: Bool
  ) {
    checkSameShape(
      [("parameter", parameter.shape), ("gradient", gradient.shape), ("momentum buffer", momentumBuffer.shape)],
      op: "sgdStep")
    let backend = Backends.backend(op: "sgdStep", parameter, gradient, momentumBuffer)
    parameter.makeStorageUnique()
    momentumBuffer.makeStorageUnique()
    backend.sgdStep(
      SGDStep(learningRate: learningRate, momentum: momentum, weightDecay: weightDecay, nesterov: nesterov),
      parameter: parameter, gradient: gradient, momentumBuffer: momentumBuffer)
  }

  /// One step of plain SGD (no momentum), in place: `θ ← θ − lr · (g + λ θ)`.
  public static func sgdStep(parameter: inout Tensor, gradient: Tensor, learningRate: Float, weightDecay: Float) {
    checkSameShape([("parameter", parameter.shape), ("gradient", gradient.shape)], op: "sgdStep")
    let backend = Backends.backend(op: "sgdStep", parameter, gradient)
    parameter.makeStorageUnique()
    backend.sgdStep(
      SGDStep(learningRate: learningRate, momentum: 0, weightDecay: weightDecay, nesterov: false),
      parameter: parameter, gradient: gradient, momentumBuffer: nil)
  }

  /// In place `self ← α · self + β · other` (e.g. an exponential moving average,
  /// `shadow ← d · shadow + (1 − d) · θ`); `other` has `self`'s shape.
  public mutating func formLinearCombination(scaledBy alpha: Float, adding other: Tensor, scaledBy beta: Float) {
    Tensor.checkSameShape([("self", shape), ("other", other.shape)], op: "formLinearCombination")
    let backend = Backends.backend(op: "formLinearCombination", self, other)
    makeStorageUnique()
    backend.linearCombination(self, scaledBy: alpha, adding: other, scaledBy: beta)
  }

}
