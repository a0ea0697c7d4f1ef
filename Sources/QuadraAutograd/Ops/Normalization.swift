extension Variable {
  /// Differentiable LayerNorm over the last axis: `y = (x − μ)/√(σ² + ε) · γ + β`
  /// (see ``QuadraCore/Tensor/layerNorm(weight:bias:epsilon:)``).
  ///
  /// The tape keeps the input, γ and the per-row mean and inverse standard deviation; backward
  /// recomputes the normalized values from them.
  public func layerNorm(weight: Variable, bias: Variable, epsilon: Float = 1e-6) -> Variable {
    let (output, statistics) = value.layerNorm(weight: weight.value, bias: bias.value, epsilon: epsilon)
    let x = value, gamma = weight.value
    let tracks = (tracksGradient, weight.tracksGradient, bias.tracksGradient)
    // In a pre-norm block x also feeds the residual join, recorded later: its gradient is usually pending
    // here, and the kernel adds it as it writes ∂L/∂x.
    return Variable.record(output, inputs: [self, weight, bias], foldingPullback: { g, pending in
      let (dx, dWeight, dBias) = x.layerNormBackward(
        outputGradient: g, weight: gamma, statistics: statistics, inputGradientAddend: pending)
      return [tracks.0 ? dx : nil, tracks.1 ? dWeight : nil, tracks.2 ? dBias : nil]
    })
  }
}
