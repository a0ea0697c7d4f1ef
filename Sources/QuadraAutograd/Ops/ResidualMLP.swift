import QuadraCore

extension Variable {
  /// Differentiable fused residual MLP, `y = x + γ ⊙ (GELU(LN(x)·W₁ᵀ + b₁)·W₂ᵀ + b₂)`
  /// (see ``QuadraCore/Tensor/residualMLP(parameters:epsilon:)``). `parameters` are in the order of
  /// ``QuadraCore/ResidualMLPParameters/all``: LN weight and bias, W₁, b₁, W₂, b₂, γ.
  ///
  /// The tape keeps `x`, the hidden pre-activation `h`, the MLP output and LayerNorm's statistics;
  /// the normalized input and `GELU(h)` are recomputed in the backward pass.
  public func residualMLP(parameters: [Variable], epsilon: Float = 1e-6) -> Variable {
    let weights = ResidualMLPParameters(parameters.map(\.value))
    let (output, saved) = value.residualMLP(parameters: weights, epsilon: epsilon)
    let x = value
    let tracks = parameters.map(\.tracksGradient)
    let tracksInput = tracksGradient
    return Variable.record(output, inputs: [self] + parameters) { g in
      let (dx, gradients) = x.residualMLPBackward(parameters: weights, epsilon: epsilon, saved: saved, outputGradient: g)
      return [tracksInput ? dx : nil] + zip(gradients.all, tracks).map { $1 ? $0 : nil }
    }
  }
}
