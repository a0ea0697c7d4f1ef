import QuadraCore

extension Variable {
  /// Differentiable layer-scaled residual join, `y = x + γ ⊙ m` with `x` = `self`, `m` = `branch`
  /// (same shape) and `γ` = `scale` (`[C]`, along the last axis); see
  /// ``QuadraCore/Tensor/layerScaleResidual(branch:scale:)``.
  ///
  /// The same values as `self + branch * scale` up to rounding, in one pass forward and one backward
  /// (∂m and ∂γ together); the tape keeps `m` for ∂γ, as the product would.
  public func layerScaleResidual(branch: Variable, scale: Variable) -> Variable {
    let output = value.layerScaleResidual(branch: branch.value, scale: scale.value)
    let (m, gamma) = (branch.value, scale.value)
    let tracks = (tracksGradient, branch.tracksGradient, scale.tracksGradient)
    return Variable.record(output, inputs: [self, branch, scale]) { g in
      guard tracks.1 || tracks.2 else { return [tracks.0 ? g : nil, nil, nil] }
      let gradients = Tensor.layerScaleResidualBackward(branch: m, scale: gamma, outputGradient: g)
      return [tracks.0 ? g : nil, tracks.1 ? gradients.branch : nil, tracks.2 ? gradients.scale : nil]
    }
  }
}
