// The residual MLP built from a backend's own unfused primitives: the reference backend's
// implementation (the oracle the fused CPU kernel is tested against) and the definition of the
// fused primitive in terms of the others.

extension Backend {
  /// ``Backend/residualMLP(_:parameters:epsilon:into:saved:)`` as LayerNorm, two matrix products
  /// with their biases, GELU, γ ⊙ and the residual add, each a primitive of this backend.
  public func composedResidualMLP(
    _ x: Tensor, parameters p: ResidualMLPParameters, epsilon: Float, into output: Tensor, saved: ResidualMLPSaved
  ) {
    let (c, h) = (p.scale.count, p.expandBias.count)
    let rows = x.count / c
    let x2 = x.reshaped([rows, c])
    let normalized = Tensor(uninitializedShape: [rows, c], device: device)
    layerNorm(
      x2, weight: p.normWeight, bias: p.normBias, epsilon: epsilon, into: normalized, mean: saved.mean,
      inverseStandardDeviation: saved.inverseStandardDeviation)
    matrixMultiply(
      normalized, p.expandWeight, MatrixProduct(m: rows, n: h, k: c, transposeB: true), columnBias: p.expandBias,
      into: saved.hidden)
    let activated = Tensor(uninitializedShape: [rows, h], device: device)
    gelu(saved.hidden, bias: nil, into: activated)
    matrixMultiply(
      activated, p.projectWeight, MatrixProduct(m: rows, n: c, k: h, transposeB: true), columnBias: p.projectBias,
      into: saved.mlpOutput)
    let scaled = Tensor(uninitializedShape: [rows, c], device: device)
    binary(.multiply, saved.mlpOutput, p.scale, into: scaled)
    binary(.add, x2, scaled, into: output.reshaped([rows, c]))
  }

  /// ``Backend/residualMLPBackward(_:parameters:saved:outputGradient:inputGradient:gradients:)`` from
  /// this backend's unfused primitives (x̂ and GELU(h) recomputed, as the fused kernel does).
  public func composedResidualMLPBackward(
    _ x: Tensor, parameters p: ResidualMLPParameters, epsilon: Float, saved: ResidualMLPSaved, outputGradient: Tensor,
    inputGradient: Tensor, gradients: ResidualMLPParameters
  ) {
    let (c, h) = (p.scale.count, p.expandBias.count)
    let rows = x.count / c
    let x2 = x.reshaped([rows, c]), dy = outputGradient.reshaped([rows, c])
    // x̂ again: LayerNorm on the same rows computes the same statistics as the forward pass did.
    let normalized = Tensor(uninitializedShape: [rows, c], device: device)
    layerNorm(
      x2, weight: p.normWeight, bias: p.normBias, epsilon: epsilon, into: normalized,
      mean: Tensor(uninitializedShape: [rows], device: device),
      inverseStandardDeviation: Tensor(uninitializedShape: [rows], device: device))
    sumOfProducts(dy, saved.mlpOutput, into: gradients.scale)
    let mlpGradient = Tensor(uninitializedShape: [rows, c], device: device)
    binary(.multiply, dy, p.scale, into: mlpGradient)
    sum(mlpGradient, keeping: [false, true], into: gradients.projectBias)
    // ∂GELU(h) = ∂o·W₂, then GELU(h) and ∂h = ∂GELU(h) ⊙ GELU′(h) (in place) with ∂b₁ = Σ ∂h in one step.
    let hiddenGradient = Tensor(uninitializedShape: [rows, h], device: device)
    matrixMultiply(
      mlpGradient, p.projectWeight, MatrixProduct(m: rows, n: h, k: c), columnBias: nil, into: hiddenGradient)
    let activated = Tensor(uninitializedShape: [rows, h], device: device)
    geluBackwardWithActivation(
      saved.hidden, gradient: hiddenGradient, activated: activated, biasGradient: gradients.expandBias)
    matrixMultiply(
      mlpGradient, activated, MatrixProduct(m: c, n: h, k: rows, transposeA: true), columnBias: nil,
      into: gradients.projectWeight)
    matrixMultiply(
      hiddenGradient, normalized, MatrixProduct(m: h, n: c, k: rows, transposeA: true), columnBias: nil,
      into: gradients.expandWeight)
    let normalizedGradient = Tensor(uninitializedShape: [rows, c], device: device)
    matrixMultiply(
      hiddenGradient, p.expandWeight, MatrixProduct(m: rows, n: c, k: h), columnBias: nil, into: normalizedGradient)
    // dy through the residual, added as LayerNorm's backward writes each row.
    layerNormBackward(
      x2, outputGradient: normalizedGradient, weight: p.normWeight, mean: saved.mean,
      inverseStandardDeviation: saved.inverseStandardDeviation, inputGradient: inputGradient.reshaped([rows, c]),
      inputGradientAddend: dy, weightGradient: gradients.normWeight, biasGradient: gradients.normBias)
  }
}
