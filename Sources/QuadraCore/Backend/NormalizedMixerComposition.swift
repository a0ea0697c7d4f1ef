// The QuadraBlock's normalized mixer, `QDW(LN(x))` (optionally joined, `x + γ ⊙ QDW(LN(x))`), built from a
// backend's own LayerNorm, quadratic depthwise and layer-scale-residual primitives: the reference backend's implementation (the oracle the fused CPU kernel is
// tested against) and the definition of the fused primitive in terms of the others.

extension Backend {
  /// ``Backend/normalizedQuadraticDepthwiseConvolution(_:normalization:weights:biases:residual:into:statistics:)`` as
  /// a LayerNorm into a temporary `x̂`, then the quadratic depthwise convolution of `x̂` (and the join).
  public func composedNormalizedQuadraticDepthwiseConvolution(
    _ x: Tensor, normalization: LayerNormParameters, weights: TensorTriple, biases: TensorTriple?,
    residual: (scale: Tensor, branch: Tensor)?, into output: Tensor, statistics: LayerNormStatistics
  ) {
    let normalized = composedNormalizedInput(x, normalization, statistics: statistics)
    guard let residual else {
      quadraticDepthwiseConvolution(normalized, weights: weights, biases: biases, into: output)
      return
    }
    quadraticDepthwiseConvolution(normalized, weights: weights, biases: biases, into: residual.branch)
    layerScaleResidual(x, branch: residual.branch, scale: residual.scale, into: output)
  }

  /// ``Backend/normalizedQuadraticDepthwiseConvolutionBackward(_:normalization:statistics:weights:biases:residual:outputGradient:inputGradient:normalizationGradients:weightGradients:biasGradients:scaleGradient:)``
  /// from this backend's unfused primitives: the join's gradients (with `residual`), `x̂` again, the
  /// convolution's gradients with `∂L/∂x̂`, LayerNorm's backward from the forward's statistics, and the
  /// identity path's `∂L/∂y` added.
  public func composedNormalizedQuadraticDepthwiseConvolutionBackward(
    _ x: Tensor, normalization: LayerNormParameters, statistics: LayerNormStatistics, weights: TensorTriple,
    biases: TensorTriple?, residual: (scale: Tensor, branch: Tensor)?, outputGradient: Tensor, inputGradient: Tensor,
    normalizationGradients: (weight: Tensor, bias: Tensor), weightGradients: TensorTriple, biasGradients: TensorTriple?,
    scaleGradient: Tensor?
  ) {
    // LayerNorm on the same rows computes the same statistics as the forward pass did.
    let rows = statistics.mean.count
    let normalized = composedNormalizedInput(
      x, normalization,
      statistics: LayerNormStatistics(
        mean: Tensor(uninitializedShape: [rows], device: device),
        inverseStandardDeviation: Tensor(uninitializedShape: [rows], device: device)))
    var branchGradient = outputGradient
    if let residual, let scaleGradient {
      branchGradient = Tensor(uninitializedShape: x.shape, device: device)
      layerScaleResidualBackward(
        branch: residual.branch, scale: residual.scale, outputGradient: outputGradient, branchGradient: branchGradient,
        scaleGradient: scaleGradient)
    }
    let normalizedGradient = Tensor(uninitializedShape: x.shape, device: device)
    quadraticDepthwiseConvolutionBackward(
      normalized, weights: weights, biases: biases, outputGradient: branchGradient, inputGradient: normalizedGradient,
      weightGradients: weightGradients, biasGradients: biasGradients)
    let c = x.shape[x.rank - 1]
    let normGradient = residual == nil ? inputGradient : Tensor(uninitializedShape: x.shape, device: device)
    layerNormBackward(
      x.reshaped([rows, c]), outputGradient: normalizedGradient.reshaped([rows, c]), weight: normalization.weight,
      mean: statistics.mean, inverseStandardDeviation: statistics.inverseStandardDeviation,
      inputGradient: normGradient.reshaped([rows, c]), weightGradient: normalizationGradients.weight,
      biasGradient: normalizationGradients.bias)
    if residual != nil { binary(.add, normGradient, outputGradient, into: inputGradient) }
  }

  /// `LN(x)` with this backend's LayerNorm, writing its statistics to `statistics`.
  private func composedNormalizedInput(
    _ x: Tensor, _ normalization: LayerNormParameters, statistics: LayerNormStatistics
  ) -> Tensor {
    let c = x.shape[x.rank - 1], rows = x.count / c
    let normalized = Tensor(uninitializedShape: x.shape, device: device)
    layerNorm(
      x.reshaped([rows, c]), weight: normalization.weight, bias: normalization.bias, epsilon: normalization.epsilon,
      into: normalized.reshaped([rows, c]), mean: statistics.mean,
      inverseStandardDeviation: statistics.inverseStandardDeviation)
    return normalized
  }
}
