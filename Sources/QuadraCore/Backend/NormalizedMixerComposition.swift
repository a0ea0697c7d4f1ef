// The QuadraBlock's normalized mixer, `QDW(LN(x))`, built from a backend's own LayerNorm and quadratic
// depthwise primitives: the reference backend's implementation (the oracle the fused CPU kernel is
// tested against) and the definition of the fused primitive in terms of the others.

extension Backend {
  /// ``Backend/normalizedQuadraticDepthwiseConvolution(_:normalization:weights:biases:into:statistics:)`` as
  /// a LayerNorm into a temporary `x̂`, then the quadratic depthwise convolution of `x̂`.
  public func composedNormalizedQuadraticDepthwiseConvolution(
    _ x: Tensor, normalization: LayerNormParameters, weights: TensorTriple, biases: TensorTriple?, into output: Tensor,
    statistics: LayerNormStatistics
  ) {
    let normalized = composedNormalizedInput(x, normalization, statistics: statistics)
    quadraticDepthwiseConvolution(normalized, weights: weights, biases: biases, into: output)
  }

  /// ``Backend/normalizedQuadraticDepthwiseConvolutionBackward(_:normalization:statistics:weights:biases:outputGradient:inputGradient:inputGradientAddend:normalizationGradients:weightGradients:biasGradients:)``
  /// from this backend's unfused primitives: `x̂` again, the convolution's gradients with `∂L/∂x̂`, then
  /// LayerNorm's backward from the forward's statistics.
  public func composedNormalizedQuadraticDepthwiseConvolutionBackward(
    _ x: Tensor, normalization: LayerNormParameters, statistics: LayerNormStatistics, weights: TensorTriple,
    biases: TensorTriple?, outputGradient: Tensor, inputGradient: Tensor, inputGradientAddend: Tensor?,
    normalizationGradients: (weight: Tensor, bias: Tensor), weightGradients: TensorTriple, biasGradients: TensorTriple?
  ) {
    // LayerNorm on the same rows computes the same statistics as the forward pass did.
    let rows = statistics.mean.count
    let normalized = composedNormalizedInput(
      x, normalization,
      statistics: LayerNormStatistics(
        mean: Tensor(uninitializedShape: [rows], device: device),
        inverseStandardDeviation: Tensor(uninitializedShape: [rows], device: device)))
    let normalizedGradient = Tensor(uninitializedShape: x.shape, device: device)
    quadraticDepthwiseConvolutionBackward(
      normalized, weights: weights, biases: biases, outputGradient: outputGradient, inputGradient: normalizedGradient,
      weightGradients: weightGradients, biasGradients: biasGradients)
    let c = x.shape[x.rank - 1]
    layerNormBackward(
      x.reshaped([rows, c]), outputGradient: normalizedGradient.reshaped([rows, c]), weight: normalization.weight,
      mean: statistics.mean, inverseStandardDeviation: statistics.inverseStandardDeviation,
      inputGradient: inputGradient.reshaped([rows, c]), inputGradientAddend: inputGradientAddend?.reshaped([rows, c]),
      weightGradient: normalizationGradients.weight, biasGradient: normalizationGradients.bias)
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
