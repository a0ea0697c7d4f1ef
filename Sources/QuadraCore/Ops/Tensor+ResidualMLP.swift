extension Tensor {
  /// Checks the shapes of a residual MLP on `self` and returns (rows, C, H).
  private func residualMLPChecks(_ p: ResidualMLPParameters, op: String) -> (rows: Int, channels: Int, hidden: Int) {
    opPrecondition(rank >= 1, "\(op): input must have at least one axis, got shape \(shape)")
    let c = shape[rank - 1]
    opPrecondition(c > 0, "\(op): last axis of \(shape) is empty")
    let h = p.expandBias.count
    opPrecondition(h > 0 && p.expandBias.shape == [h], "\(op): expand bias must be [H] with H > 0, got \(p.expandBias.shape)")
    for (name, tensor, expected) in [
      ("norm weight", p.normWeight, [c]), ("norm bias", p.normBias, [c]), ("expand weight", p.expandWeight, [h, c]),
      ("project weight", p.projectWeight, [c, h]), ("project bias", p.projectBias, [c]), ("scale", p.scale, [c]),
    ] {
      opPrecondition(
        tensor.shape == expected, "\(op): \(name) must be \(expected) for input \(shape) and H = \(h), got \(tensor.shape)")
    }
    return (count / c, c, h)
  }

  /// A MetaFormer block's second half in one fused op: with `x̂ = LN(x)` over the last axis,
  ///
  ///     y = x + γ ⊙ (GELU(x̂·W₁ᵀ + b₁)·W₂ᵀ + b₂)
  ///
  /// (`W₁` `[H, C]`, `W₂` `[C, H]` in `nn.Linear` layout). The same values as LayerNorm, two
  /// ``linear(weight:bias:)`` maps, GELU, the layer scale and the residual add in sequence, up to
  /// rounding, in far fewer passes over memory.
  ///
  /// - Returns: `y` (the shape of `self`) and what ``residualMLPBackward(parameters:epsilon:saved:outputGradient:)`` needs.
  public func residualMLP(
    parameters: ResidualMLPParameters, epsilon: Float = 1e-6
  ) -> (output: Tensor, saved: ResidualMLPSaved) {
    let (rows, c, h) = residualMLPChecks(parameters, op: "residualMLP")
    let backend = Backends.backend(op: "residualMLP", [self] + parameters.all)
    let output = Tensor(uninitializedShape: shape, device: device)
    let saved = ResidualMLPSaved(
      hidden: Tensor(uninitializedShape: [rows, h], device: device),
      mlpOutput: Tensor(uninitializedShape: [rows, c], device: device),
      mean: Tensor(uninitializedShape: [rows], device: device),
      inverseStandardDeviation: Tensor(uninitializedShape: [rows], device: device))
    backend.residualMLP(self, parameters: parameters, epsilon: epsilon, into: output, saved: saved)
    return (output, saved)
  }

  /// Gradients of ``residualMLP(parameters:epsilon:)`` given ∂L/∂y; `self` is the forward input and `epsilon` the forward's.
  ///
  /// - Returns: ∂L/∂x (through the residual and the MLP; the shape of `self`) and every parameter's gradient.
  public func residualMLPBackward(
    parameters: ResidualMLPParameters, epsilon: Float = 1e-6, saved: ResidualMLPSaved, outputGradient: Tensor
  ) -> (input: Tensor, parameters: ResidualMLPParameters) {
    let (rows, c, h) = residualMLPChecks(parameters, op: "residualMLPBackward")
    opPrecondition(
      outputGradient.shape == shape,
      "residualMLPBackward: gradient shape \(outputGradient.shape) differs from input shape \(shape)")
    opPrecondition(
      saved.hidden.shape == [rows, h] && saved.mlpOutput.shape == [rows, c] && saved.mean.shape == [rows]
        && saved.inverseStandardDeviation.shape == [rows],
      "residualMLPBackward: saved tensors \(saved.hidden.shape), \(saved.mlpOutput.shape), \(saved.mean.shape) "
        + "do not match \(rows) rows of \(c) channels, H = \(h)")
    let backend = Backends.backend(
      op: "residualMLPBackward",
      [self, outputGradient, saved.hidden, saved.mlpOutput, saved.mean, saved.inverseStandardDeviation]
        + parameters.all)
    let inputGradient = Tensor(uninitializedShape: shape, device: device)
    let gradients = ResidualMLPParameters(parameters.all.map { Tensor(uninitializedShape: $0.shape, device: device) })
    backend.residualMLPBackward(
      self, parameters: parameters, epsilon: epsilon, saved: saved, outputGradient: outputGradient,
      inputGradient: inputGradient,
      gradients: gradients)
    return (inputGradient, gradients)
  }
}
