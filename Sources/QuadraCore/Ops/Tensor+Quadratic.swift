// Quadratic neurons: y = f_a(x) ⊙ f_b(x) + f_c(x) for three affine maps f_a, f_b, f_c of the
// same input (depthwise convolutions, linear maps or dense convolutions). The backward passes
// take only x (and the parameters): they recompute f_a(x) and f_b(x) instead of keeping them,
// so training holds one copy of the activation per quadratic layer instead of five.

extension Tensor {
  // MARK: Depthwise

  /// Quadratic depthwise convolution (QuadraNet's token mixer), stride 1, "same" zero padding:
  ///
  ///     y = (W_a ∗ x + b_a) ⊙ (W_b ∗ x + b_b) + (W_c ∗ x + b_c)
  ///
  /// computed by one fused kernel that writes only `y` (see ``QuadraticDepthwiseConvolution``).
  ///
  /// - Parameters:
  ///   - weights: `(W_a, W_b, W_c)`, each `[k, k, C]`, `k` odd.
  ///   - biases: `(b_a, b_b, b_c)`, each `[C]`, or nil.
  /// - Returns: `[N, H, W, C]`, the shape of `self`.
  public func quadraticDepthwiseConv2D(weights: (Tensor, Tensor, Tensor), biases: (Tensor, Tensor, Tensor)?) -> Tensor {
    _ = Tensor.checkQuadraticDepthwise(input: shape, weights: weights, biases: biases)
    let backend = Backends.backend(op: "quadraticDepthwiseConv2D", [self] + tensors(weights, biases))
    let output = Tensor(uninitializedShape: shape, device: device)
    backend.quadraticDepthwiseConvolution(self, weights: weights, biases: biases, into: output)
    return output
  }

  /// Gradients of ``quadraticDepthwiseConv2D(weights:biases:)`` given `outputGradient = ∂L/∂y`,
  /// from the input alone: `a = W_a ∗ x + b_a` and `b = W_b ∗ x + b_b` are recomputed tile by
  /// tile, and with `g_a = ∂L/∂y ⊙ b`, `g_b = ∂L/∂y ⊙ a`, `g_c = ∂L/∂y`
  ///
  /// - `∂L/∂x = Σ_i g_i ⋆ flip(W_i)` (nil unless `needsInputGradient`),
  /// - `∂L/∂W_i[kh, kw, c] = Σ_{n,h,w} x[n, h + kh − p, w + kw − p, c] · g_i[n, h, w, c]`,
  /// - `∂L/∂b_i = Σ_{n,h,w} g_i` (when `biases` is given).
  public static func quadraticDepthwiseConv2DBackward(
    input: Tensor, weights: (Tensor, Tensor, Tensor), biases: (Tensor, Tensor, Tensor)?, outputGradient: Tensor,
    needsInputGradient: Bool = true
  ) -> (input: Tensor?, weights: (Tensor, Tensor, Tensor), biases: (Tensor, Tensor, Tensor)?) {
    let c = checkQuadraticDepthwise(input: input.shape, weights: weights, biases: biases).channels
    opPrecondition(
      outputGradient.shape == input.shape,
      "quadraticDepthwiseConv2D backward: output gradient \(outputGradient.shape) differs from output shape \(input.shape)"
    )
    let backend = Backends.backend(
      op: "quadraticDepthwiseConv2D backward", [input, outputGradient] + tensors(weights, biases))
    let device = input.device
    let inputGradient = needsInputGradient ? Tensor(uninitializedShape: input.shape, device: device) : nil
    let weightGradients = uninitializedTriple(weights.0.shape, device: device)
    let biasGradients = biases.map { _ in uninitializedTriple([c], device: device) }
    backend.quadraticDepthwiseConvolutionBackward(
      input, weights: weights, biases: biases, outputGradient: outputGradient, inputGradient: inputGradient,
      weightGradients: weightGradients, biasGradients: biasGradients)
    return (inputGradient, weightGradients, biasGradients)
  }

  /// The quadratic depthwise convolution of `LN(self)`, a QuadraBlock's `Mixer(LN₁(x))`, in one op:
  ///
  ///     x̂ = (x − μ)/√(σ² + ε) ⊙ γ + β   (per pixel, over the channels)
  ///     y = (W_a ∗ x̂ + b_a) ⊙ (W_b ∗ x̂ + b_b) + (W_c ∗ x̂ + b_c)
  ///
  /// The kernel normalizes rows as it reads them, so `x̂` is never written (nor, in backward, read back
  /// from memory); the same values as ``layerNorm(weight:bias:epsilon:)`` followed by
  /// ``quadraticDepthwiseConv2D(weights:biases:)``, up to rounding.
  ///
  /// - Returns: `y` (`[N, H, W, C]`) and the per-pixel statistics the backward pass needs.
  public func normalizedQuadraticDepthwiseConv2D(
    normalization: LayerNormParameters, weights: (Tensor, Tensor, Tensor), biases: (Tensor, Tensor, Tensor)?
  ) -> (output: Tensor, statistics: LayerNormStatistics) {
    let c = Tensor.checkQuadraticDepthwise(input: shape, weights: weights, biases: biases).channels
    Tensor.checkNormalization(normalization, channels: c, op: "normalizedQuadraticDepthwiseConv2D")
    let backend = Backends.backend(
      op: "normalizedQuadraticDepthwiseConv2D",
      [self, normalization.weight, normalization.bias] + tensors(weights, biases))
    let output = Tensor(uninitializedShape: shape, device: device)
    let pixels = count / c
    let statistics = LayerNormStatistics(
      mean: Tensor(uninitializedShape: [pixels], device: device),
      inverseStandardDeviation: Tensor(uninitializedShape: [pixels], device: device))
    backend.normalizedQuadraticDepthwiseConvolution(
      self, normalization: normalization, weights: weights, biases: biases, into: output, statistics: statistics)
    return (output, statistics)
  }

  /// Gradients of ``normalizedQuadraticDepthwiseConv2D(normalization:weights:biases:)`` given
  /// `outputGradient = ∂L/∂y`, from the input and the forward's statistics: with `∂L/∂x̂` as in
  /// ``quadraticDepthwiseConv2DBackward(input:weights:biases:outputGradient:needsInputGradient:)`` (on `x̂`),
  /// `∂L/∂x` is LayerNorm's (``layerNormBackward(outputGradient:weight:statistics:inputGradientAddend:)``), computed row by row
  /// while the row is in cache, and `∂L/∂γ = Σ ∂L/∂x̂ ⊙ (x − μ)σ⁻¹`, `∂L/∂β = Σ ∂L/∂x̂`.
  ///
  /// - Parameter inputGradientAddend: when given (the input's shape), the returned input gradient is
  ///   `∂L/∂x` plus it: the gradient `x` already has from its other uses (a block's residual path), added as
  ///   each row is written rather than in a separate pass over memory.
  public static func normalizedQuadraticDepthwiseConv2DBackward(
    input: Tensor, normalization: LayerNormParameters, statistics: LayerNormStatistics,
    weights: (Tensor, Tensor, Tensor), biases: (Tensor, Tensor, Tensor)?, outputGradient: Tensor,
    inputGradientAddend: Tensor? = nil
  ) -> (
    input: Tensor, normalization: (weight: Tensor, bias: Tensor), weights: (Tensor, Tensor, Tensor),
    biases: (Tensor, Tensor, Tensor)?
  ) {
    let op = "normalizedQuadraticDepthwiseConv2D backward"
    let c = checkQuadraticDepthwise(input: input.shape, weights: weights, biases: biases).channels
    checkNormalization(normalization, channels: c, op: op)
    let pixels = input.count / c
    opPrecondition(
      outputGradient.shape == input.shape,
      "\(op): output gradient \(outputGradient.shape) differs from output shape \(input.shape)")
    opPrecondition(
      statistics.mean.shape == [pixels] && statistics.inverseStandardDeviation.shape == [pixels],
      "\(op): statistics \(statistics.mean.shape), \(statistics.inverseStandardDeviation.shape) are not [\(pixels)] for input \(input.shape)")
    if let inputGradientAddend {
      opPrecondition(
        inputGradientAddend.shape == input.shape,
        "\(op): input-gradient addend \(inputGradientAddend.shape) differs from input shape \(input.shape)")
    }
    let backend = Backends.backend(
      op: op,
      [input, outputGradient, normalization.weight, normalization.bias, statistics.mean,
       statistics.inverseStandardDeviation] + tensors(weights, biases) + (inputGradientAddend.map { [$0] } ?? []))
    let device = input.device
    let inputGradient = Tensor(uninitializedShape: input.shape, device: device)
    let normalizationGradients = (
      weight: Tensor(uninitializedShape: [c], device: device), bias: Tensor(uninitializedShape: [c], device: device)
    )
    let weightGradients = uninitializedTriple(weights.0.shape, device: device)
    let biasGradients = biases.map { _ in uninitializedTriple([c], device: device) }
    backend.normalizedQuadraticDepthwiseConvolutionBackward(
      input, normalization: normalization, statistics: statistics, weights: weights, biases: biases,
      outputGradient: outputGradient, inputGradient: inputGradient, inputGradientAddend: inputGradientAddend,
      normalizationGradients: normalizationGradients, weightGradients: weightGradients, biasGradients: biasGradients)
    return (inputGradient, normalizationGradients, weightGradients, biasGradients)
  }

  private static func checkNormalization(_ normalization: LayerNormParameters, channels c: Int, op: String) {
    opPrecondition(
      normalization.weight.shape == [c] && normalization.bias.shape == [c],
      "\(op): LayerNorm weight \(normalization.weight.shape) and bias \(normalization.bias.shape) must both be [\(c)]")
    opPrecondition(
      normalization.epsilon.isFinite && normalization.epsilon >= 0,
      "\(op): LayerNorm epsilon \(normalization.epsilon) must be finite and non-negative")
  }

  static func checkQuadraticDepthwise(
    input: [Int], weights: (Tensor, Tensor, Tensor), biases: (Tensor, Tensor, Tensor)?
  ) -> (batch: Int, height: Int, width: Int, channels: Int, kernelSize: Int) {
    let shapes = "input \(input), weights \([weights.0.shape, weights.1.shape, weights.2.shape])"
      + (biases.map { ", biases \([$0.0.shape, $0.1.shape, $0.2.shape])" } ?? "")
    opPrecondition(
      weights.0.shape == weights.1.shape && weights.0.shape == weights.2.shape,
      "quadraticDepthwiseConv2D: the three weights differ in shape; \(shapes)")
    if let biases {
      opPrecondition(
        biases.0.shape == [input.last ?? 0] && biases.1.shape == biases.0.shape && biases.2.shape == biases.0.shape,
        "quadraticDepthwiseConv2D: biases must be [C]; \(shapes)")
    }
    opPrecondition(
      input.count == 4 && weights.0.rank == 3 && weights.0.shape[0] == weights.0.shape[1]
        && weights.0.shape[0] % 2 == 1 && weights.0.shape[2] == input[3] && input[1] > 0 && input[2] > 0
        && input[3] > 0,
      "quadraticDepthwiseConv2D: expected input [N, H, W, C] and weights [k, k, C] with k odd; \(shapes)")
    return (input[0], input[1], input[2], input[3], weights.0.shape[0])
  }

  // MARK: Linear

  /// Quadratic linear map over the last axis (QuadraLib's `QuadraFC`):
  ///
  ///     y = (x W_aᵀ + b_a) ⊙ (x W_bᵀ + b_b) + x W_cᵀ + b_c
  ///
  /// The three maps are one GEMM with the weights stacked as `[3·out, in]` (and the biases
  /// added in its epilogue), followed by one elementwise pass.
  ///
  /// - Parameters:
  ///   - weights: `(W_a, W_b, W_c)`, each `[out, in]`.
  ///   - biases: `(b_a, b_b, b_c)`, each `[out]`, or nil.
  /// - Returns: `[..., out]` for `self` `[..., in]`.
  public func quadraticLinear(weights: (Tensor, Tensor, Tensor), biases: (Tensor, Tensor, Tensor)?) -> Tensor {
    let outputs = Tensor.checkQuadratic(weights: weights, biases: biases, op: "quadraticLinear")
    let projections = linear(weight: stacked(weights), bias: biases.map(stacked))
    return Tensor.quadraticCombination(projections, outputs: outputs)
  }

  /// Gradients of ``quadraticLinear(weights:biases:)`` from the input alone: the stacked GEMM
  /// recomputes `[a | b | c]`, which is overwritten in place by `G = [∂L/∂y ⊙ b | ∂L/∂y ⊙ a | ∂L/∂y]`;
  /// then ``linearBackward(input:weight:outputGradient:needsInputGradient:hasBias:)`` on the stacked
  /// weights gives `∂L/∂x = G · W` and `∂L/∂W = Gᵀ · x` (two GEMMs for all three maps).
  public static func quadraticLinearBackward(
    input: Tensor, weights: (Tensor, Tensor, Tensor), biases: (Tensor, Tensor, Tensor)?, outputGradient: Tensor,
    needsInputGradient: Bool = true
  ) -> (input: Tensor?, weights: (Tensor, Tensor, Tensor), biases: (Tensor, Tensor, Tensor)?) {
    let outputs = checkQuadratic(weights: weights, biases: biases, op: "quadraticLinear backward")
    let stackedWeight = stacked(weights)
    let projections = input.linear(weight: stackedWeight, bias: biases.map(stacked))
    opPrecondition(
      outputGradient.shape == Array(projections.shape.dropLast()) + [outputs],
      "quadraticLinear backward: output gradient \(outputGradient.shape) does not match input \(input.shape) and weights \(weights.0.shape)"
    )
    quadraticGradients(overwriting: projections, outputGradient: outputGradient)
    let gradients = linearBackward(
      input: input, weight: stackedWeight, outputGradient: projections, needsInputGradient: needsInputGradient,
      hasBias: biases != nil)
    return (gradients.input, gradients.weight.unstacked(), gradients.bias?.unstacked())
  }

  // MARK: Dense convolution

  /// Quadratic dense 2-D convolution with zero padding (the authors' `QuadraConv` without
  /// normalization and activation):
  ///
  ///     y = (W_a ∗ x + b_a) ⊙ (W_b ∗ x + b_b) + (W_c ∗ x + b_c)
  ///
  /// One ``conv2D(weight:bias:stride:padding:)`` with the weights stacked along the output
  /// channels (`[3·O, kh, kw, I]`), so the patches are gathered once, then one elementwise pass.
  ///
  /// - Parameters:
  ///   - weights: `(W_a, W_b, W_c)`, each `[O, kh, kw, I]`.
  ///   - biases: `(b_a, b_b, b_c)`, each `[O]`, or nil.
  public func quadraticConv2D(
    weights: (Tensor, Tensor, Tensor), biases: (Tensor, Tensor, Tensor)?, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)
  ) -> Tensor {
    let outputs = Tensor.checkQuadratic(weights: weights, biases: biases, op: "quadraticConv2D")
    let projections = conv2D(weight: stacked(weights), bias: biases.map(stacked), stride: stride, padding: padding)
    return Tensor.quadraticCombination(projections, outputs: outputs)
  }

  /// Gradients of ``quadraticConv2D(weights:biases:stride:padding:)`` from the input alone, as
  /// ``quadraticLinearBackward(input:weights:biases:outputGradient:needsInputGradient:)`` with the
  /// stacked convolution in place of the stacked GEMM.
  public static func quadraticConv2DBackward(
    input: Tensor, weights: (Tensor, Tensor, Tensor), biases: (Tensor, Tensor, Tensor)?, outputGradient: Tensor,
    stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0), needsInputGradient: Bool = true
  ) -> (input: Tensor?, weights: (Tensor, Tensor, Tensor), biases: (Tensor, Tensor, Tensor)?) {
    let outputs = checkQuadratic(weights: weights, biases: biases, op: "quadraticConv2D backward")
    let stackedWeight = stacked(weights)
    let projections = input.conv2D(weight: stackedWeight, bias: biases.map(stacked), stride: stride, padding: padding)
    opPrecondition(
      outputGradient.shape == Array(projections.shape.dropLast()) + [outputs],
      "quadraticConv2D backward: output gradient \(outputGradient.shape) does not match the output shape \(Array(projections.shape.dropLast()) + [outputs])"
    )
    quadraticGradients(overwriting: projections, outputGradient: outputGradient)
    let gradients = conv2DBackward(
      input: input, weight: stackedWeight, outputGradient: projections, stride: stride, padding: padding,
      needsInputGradient: needsInputGradient, hasBias: biases != nil)
    return (gradients.input, gradients.weight.unstacked(), gradients.bias?.unstacked())
  }

  // MARK: Shared pieces

  /// Checks that the three weights (and biases) agree; returns the output features per factor.
  static func checkQuadratic(weights: (Tensor, Tensor, Tensor), biases: (Tensor, Tensor, Tensor)?, op: String) -> Int {
    let shapes = "weights \([weights.0.shape, weights.1.shape, weights.2.shape])"
      + (biases.map { ", biases \([$0.0.shape, $0.1.shape, $0.2.shape])" } ?? "")
    opPrecondition(
      weights.0.rank >= 2 && weights.0.shape == weights.1.shape && weights.0.shape == weights.2.shape,
      "\(op): the three weights must have one shape; \(shapes)")
    if let biases {
      opPrecondition(
        biases.0.shape == [weights.0.shape[0]] && biases.1.shape == biases.0.shape && biases.2.shape == biases.0.shape,
        "\(op): biases must be [out]; \(shapes)")
    }
    return weights.0.shape[0]
  }

  /// `y[r, j] = z[r, j] · z[r, F + j] + z[r, 2F + j]` for `z` `[..., 3F]`, giving `[..., F]`.
  static func quadraticCombination(_ z: Tensor, outputs F: Int) -> Tensor {
    let result = Tensor(uninitializedShape: Array(z.shape.dropLast()) + [F], device: z.device)
    z.backend.quadraticCombination(z, into: result)
    return result
  }

  /// Overwrites `z = [a | b | c]` (`[..., 3F]`) with `[dy ⊙ b | dy ⊙ a | dy]` for `dy` `[..., F]`:
  /// the gradients of the three affine maps. `z` must be a fresh tensor (it is written through).
  static func quadraticGradients(overwriting z: Tensor, outputGradient dy: Tensor) {
    Backends.backend(op: "quadratic backward", z, dy).quadraticGradients(overwriting: z, outputGradient: dy)
  }

  /// Splits a tensor stacked along axis 0 into its three equal parts.
  func unstacked() -> TensorTriple {
    let parts = split(sizes: [shape[0] / 3, shape[0] / 3, shape[0] / 3], axis: 0)
    return (parts[0], parts[1], parts[2])
  }
}

// Tuples cannot be extended, so the helpers on triples are free functions.

private func uninitializedTriple(_ shape: [Int], device: Device) -> TensorTriple {
  (
    Tensor(uninitializedShape: shape, device: device), Tensor(uninitializedShape: shape, device: device),
    Tensor(uninitializedShape: shape, device: device)
  )
}

/// The weights and biases as one list (for the same-device check).
private func tensors(_ weights: TensorTriple, _ biases: TensorTriple?) -> [Tensor] {
  [weights.0, weights.1, weights.2] + (biases.map { [$0.0, $0.1, $0.2] } ?? [])
}

/// The three tensors concatenated along axis 0 (weights `[3·out, ...]`, biases `[3·out]`).
private func stacked(_ triple: TensorTriple) -> Tensor { Tensor.concat([triple.0, triple.1, triple.2], axis: 0) }
