extension Tensor {
  /// Checks a layer-scaled residual's operands and returns the channel count C.
  private func layerScaleResidualChecks(branch: Tensor, scale: Tensor, op: String) -> Int {
    opPrecondition(rank >= 1, "\(op): input must have at least one axis, got shape \(shape)")
    let c = shape[rank - 1]
    opPrecondition(branch.shape == shape, "\(op): branch shape \(branch.shape) differs from input shape \(shape)")
    opPrecondition(scale.shape == [c], "\(op): scale must be [\(c)] for input \(shape), got \(scale.shape)")
    return c
  }

  /// A residual branch joining its trunk through a layer scale, in one pass:
  ///
  ///     y = x + γ ⊙ m
  ///
  /// with `x` = `self`, `m` = `branch` (the shape of `self`) and `γ` = `scale` (`[C]`, along the last axis).
  /// The same values as `self + branch * scale` up to rounding (one fused multiply-add per element).
  public func layerScaleResidual(branch: Tensor, scale: Tensor) -> Tensor {
    _ = layerScaleResidualChecks(branch: branch, scale: scale, op: "layerScaleResidual")
    let backend = Backends.backend(op: "layerScaleResidual", [self, branch, scale])
    let output = Tensor(uninitializedShape: shape, device: device)
    backend.layerScaleResidual(self, branch: branch, scale: scale, into: output)
    return output
  }

  /// Gradients of ``layerScaleResidual(branch:scale:)`` but ∂L/∂x (which is `outputGradient` itself):
  /// `∂L/∂m = γ ⊙ ∂L/∂y` and `∂L/∂γ = Σ_rows ∂L/∂y ⊙ m`, in one pass.
  public static func layerScaleResidualBackward(
    branch: Tensor, scale: Tensor, outputGradient: Tensor
  ) -> (branch: Tensor, scale: Tensor) {
    _ = outputGradient.layerScaleResidualChecks(branch: branch, scale: scale, op: "layerScaleResidualBackward")
    let backend = Backends.backend(op: "layerScaleResidualBackward", [branch, scale, outputGradient])
    let branchGradient = Tensor(uninitializedShape: branch.shape, device: branch.device)
    let scaleGradient = Tensor(uninitializedShape: scale.shape, device: scale.device)
    backend.layerScaleResidualBackward(
      branch: branch, scale: scale, outputGradient: outputGradient, branchGradient: branchGradient,
      scaleGradient: scaleGradient)
    return (branchGradient, scaleGradient)
  }
}
