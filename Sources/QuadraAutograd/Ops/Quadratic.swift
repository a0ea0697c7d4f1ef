// Differentiable quadratic neurons, y = f_a(x) ⊙ f_b(x) + f_c(x), for three affine maps of the
// same input. Each pullback captures only x and the parameter values: it recomputes f_a(x) and
// f_b(x) instead of keeping them (QuadraNet's memory-saving backward), so between forward and
// backward the tape holds one activation-sized tensor per layer instead of five
// (x, a, b, c and a ⊙ b for the composition `a * b + c`).

/// The values of three variables.
private func values(_ triple: (Variable, Variable, Variable)) -> (Tensor, Tensor, Tensor) {
  (triple.0.value, triple.1.value, triple.2.value)
}

/// Records a quadratic op with inputs `[x, W_a, W_b, W_c]` followed by `[b_a, b_b, b_c]` when
/// there are biases. `backward(outputGradient, needsInputGradient)` gives the gradients; those of
/// inputs that do not track gradients are dropped.
private func recordQuadratic(
  _ output: Tensor, _ x: Variable, _ weights: (Variable, Variable, Variable), _ biases: (Variable, Variable, Variable)?,
  backward: @escaping (Tensor, Bool) -> (
    input: Tensor?, weights: (Tensor, Tensor, Tensor), biases: (Tensor, Tensor, Tensor)?
  )
) -> Variable {
  var inputs = [x, weights.0, weights.1, weights.2]
  if let biases { inputs += [biases.0, biases.1, biases.2] }
  let tracks = inputs.map(\.tracksGradient)
  return Variable.record(output, inputs: inputs) { gradient in
    let g = backward(gradient, tracks[0])
    var result: [Tensor?] = [g.input, g.weights.0, g.weights.1, g.weights.2]
    if let b = g.biases { result += [b.0, b.1, b.2] }
    return zip(result, tracks).map { $1 ? $0 : nil }
  }
}

/// Differentiable quadratic depthwise convolution (QuadraNet's token mixer), stride 1, "same" padding:
///
///     y = (W_a ∗ x + b_a) ⊙ (W_b ∗ x + b_b) + (W_c ∗ x + b_c)
///
/// Forward and backward are fused kernels (``QuadraCore/QuadraticDepthwiseConvolution``); the
/// pullback keeps only `x`, the weights and the biases (`[C]` each, needed to recompute `a`, `b`).
///
/// - Parameters:
///   - x: `[N, H, W, C]`.
///   - weights: `(W_a, W_b, W_c)`, each `[k, k, C]`, `k` odd.
///   - biases: `(b_a, b_b, b_c)`, each `[C]`, or nil.
public func quadraticDepthwiseConv2D(
  _ x: Variable, weights: (Variable, Variable, Variable), biases: (Variable, Variable, Variable)?
) -> Variable {
  let input = x.value, weightValues = values(weights), biasValues = biases.map(values)
  let output = input.quadraticDepthwiseConv2D(weights: weightValues, biases: biasValues)
  return recordQuadratic(output, x, weights, biases) { gradient, needsInput in
    Tensor.quadraticDepthwiseConv2DBackward(
      input: input, weights: weightValues, biases: biasValues, outputGradient: gradient,
      needsInputGradient: needsInput)
  }
}

/// Differentiable `QDW(LN(x))`, a QuadraBlock's mixer on its normalized input, as one op
/// (``QuadraCore/Tensor/normalizedQuadraticDepthwiseConv2D(normalization:weights:biases:)``):
///
///     x̂ = (x − μ)/√(σ² + ε) ⊙ γ + β
///     y = (W_a ∗ x̂ + b_a) ⊙ (W_b ∗ x̂ + b_b) + (W_c ∗ x̂ + b_c)
///
/// The same values as `quadraticDepthwiseConv2D(x.layerNorm(…), …)` up to rounding, but `x̂` is never
/// stored: the pullback keeps `x` (which the block's residual keeps anyway), the per-pixel μ and σ⁻¹ and
/// the parameters, so between forward and backward the mixer half holds one activation less.
///
/// - Parameters:
///   - x: `[N, H, W, C]`.
///   - normalization: γ and β, `[C]` each, and ε.
///   - weights: `(W_a, W_b, W_c)`, each `[k, k, C]`, `k` odd.
///   - biases: `(b_a, b_b, b_c)`, each `[C]`, or nil.
public func normalizedQuadraticDepthwiseConv2D(
  _ x: Variable, normalization: (weight: Variable, bias: Variable, epsilon: Float),
  weights: (Variable, Variable, Variable), biases: (Variable, Variable, Variable)?
) -> Variable {
  let input = x.value, weightValues = values(weights), biasValues = biases.map(values)
  let norm = LayerNormParameters(
    weight: normalization.weight.value, bias: normalization.bias.value, epsilon: normalization.epsilon)
  let (output, statistics) = input.normalizedQuadraticDepthwiseConv2D(
    normalization: norm, weights: weightValues, biases: biasValues)
  var inputs = [x, normalization.weight, normalization.bias, weights.0, weights.1, weights.2]
  if let biases { inputs += [biases.0, biases.1, biases.2] }
  let tracks = inputs.map(\.tracksGradient)
  // The block's residual join, recorded after this op, has usually left x's gradient pending: the
  // kernel adds it as it writes ∂L/∂x.
  return Variable.record(output, inputs: inputs, foldingPullback: { gradient, pending in
    let g = Tensor.normalizedQuadraticDepthwiseConv2DBackward(
      input: input, normalization: norm, statistics: statistics, weights: weightValues, biases: biasValues,
      outputGradient: gradient, inputGradientAddend: pending)
    var result: [Tensor?] = [g.input, g.normalization.weight, g.normalization.bias, g.weights.0, g.weights.1, g.weights.2]
    if let b = g.biases { result += [b.0, b.1, b.2] }
    return zip(result, tracks).map { $1 ? $0 : nil }
  })
}

/// Differentiable quadratic linear map over the last axis (QuadraLib's `QuadraFC`):
///
///     y = (x W_aᵀ + b_a) ⊙ (x W_bᵀ + b_b) + x W_cᵀ + b_c
///
/// One GEMM with the stacked weights `[3·out, in]` forward; the pullback keeps only `x` and the
/// parameters and recomputes that GEMM.
///
/// - Parameters:
///   - x: `[..., in]`.
///   - weights: `(W_a, W_b, W_c)`, each `[out, in]`.
///   - biases: `(b_a, b_b, b_c)`, each `[out]`, or nil.
public func quadraticLinear(
  _ x: Variable, weights: (Variable, Variable, Variable), biases: (Variable, Variable, Variable)?
) -> Variable {
  let input = x.value, weightValues = values(weights), biasValues = biases.map(values)
  let output = input.quadraticLinear(weights: weightValues, biases: biasValues)
  return recordQuadratic(output, x, weights, biases) { gradient, needsInput in
    Tensor.quadraticLinearBackward(
      input: input, weights: weightValues, biases: biasValues, outputGradient: gradient,
      needsInputGradient: needsInput)
  }
}

/// Differentiable quadratic dense 2-D convolution with zero padding:
///
///     y = (W_a ∗ x + b_a) ⊙ (W_b ∗ x + b_b) + (W_c ∗ x + b_c)
///
/// One convolution with the weights stacked along the output channels forward; the pullback
/// keeps only `x` and the parameters and recomputes it.
///
/// - Parameters:
///   - x: `[N, H, W, I]`.
///   - weights: `(W_a, W_b, W_c)`, each `[O, kh, kw, I]`.
///   - biases: `(b_a, b_b, b_c)`, each `[O]`, or nil.
///   - stride: `(sh, sw)`.
///   - padding: `(ph, pw)`.
public func quadraticConv2D(
  _ x: Variable, weights: (Variable, Variable, Variable), biases: (Variable, Variable, Variable)?,
  stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)
) -> Variable {
  let input = x.value, weightValues = values(weights), biasValues = biases.map(values)
  let output = input.quadraticConv2D(weights: weightValues, biases: biasValues, stride: stride, padding: padding)
  return recordQuadratic(output, x, weights, biases) { gradient, needsInput in
    Tensor.quadraticConv2DBackward(
      input: input, weights: weightValues, biases: biasValues, outputGradient: gradient, stride: stride,
      padding: padding, needsInputGradient: needsInput)
  }
}
