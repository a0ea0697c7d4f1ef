/// What LayerNorm's backward pass needs besides the input: per-row mean and inverse standard
/// deviation, each of shape `[rows]` (all axes but the last, flattened). The normalized
/// tensor itself is not kept; backward recomputes it, which saves a full activation.
public struct LayerNormStatistics: Sendable {
  public var mean: Tensor
  public var inverseStandardDeviation: Tensor
}

extension Tensor {
  private func layerNormChecks(weight: Tensor, bias: Tensor, op: String) -> (rows: Int, columns: Int) {
    opPrecondition(rank >= 1, "\(op): input must have at least one axis, got shape \(shape)")
    let c = shape[rank - 1]
    opPrecondition(c > 0, "\(op): last axis of \(shape) is empty")
    opPrecondition(
      weight.shape == [c] && bias.shape == [c],
      "\(op): weight \(weight.shape) and bias \(bias.shape) must both be [\(c)] for input \(shape)")
    return (count / c, c)
  }

  /// Layer normalization over the last axis:
  /// `y = (x − μ)/√(σ² + ε) · γ + β`, with μ and σ² (biased) taken over each row of the last axis.
  ///
  /// - Parameters:
  ///   - weight: γ, shape `[C]`.
  ///   - bias: β, shape `[C]`.
  ///   - epsilon: added to the variance (ConvNeXt and HorNet use 1e-6).
  /// - Returns: the normalized tensor and the statistics that ``layerNormBackward(outputGradient:weight:statistics:inputGradientAddend:)`` needs.
  public func layerNorm(
    weight: Tensor, bias: Tensor, epsilon: Float = 1e-6
  ) -> (output: Tensor, statistics: LayerNormStatistics) {
    let rows = layerNormChecks(weight: weight, bias: bias, op: "layerNorm").rows
    let backend = Backends.backend(op: "layerNorm", self, weight, bias)
    let output = Tensor(uninitializedShape: shape, device: device)
    let mean = Tensor(uninitializedShape: [rows], device: device)
    let rstd = Tensor(uninitializedShape: [rows], device: device)
    backend.layerNorm(
      self, weight: weight, bias: bias, epsilon: epsilon, into: output, mean: mean, inverseStandardDeviation: rstd)
    return (output, LayerNormStatistics(mean: mean, inverseStandardDeviation: rstd))
  }

  /// Gradients of ``layerNorm(weight:bias:epsilon:)`` given ∂L/∂y; `self` is the forward input.
  ///
  /// - Parameter inputGradientAddend: when given (the shape of `self`), added to ∂L/∂x as each row is
  ///   written: the gradient `x` already has from its other uses (a block's residual path), without a
  ///   separate sum pass.
  /// - Returns: ∂L/∂x (shape of `self`; plus the addend), ∂L/∂γ and ∂L/∂β (shape `[C]`).
  public func layerNormBackward(
    outputGradient: Tensor, weight: Tensor, statistics: LayerNormStatistics, inputGradientAddend: Tensor? = nil
  ) -> (input: Tensor, weight: Tensor, bias: Tensor) {
    let (rows, c) = layerNormChecks(weight: weight, bias: weight, op: "layerNormBackward")
    opPrecondition(
      outputGradient.shape == shape,
      "layerNormBackward: gradient shape \(outputGradient.shape) differs from input shape \(shape)")
    opPrecondition(
      statistics.mean.count == rows && statistics.inverseStandardDeviation.count == rows,
      "layerNormBackward: statistics for \(statistics.mean.count) rows, input \(shape) has \(rows)")
    if let inputGradientAddend {
      opPrecondition(
        inputGradientAddend.shape == shape,
        "layerNormBackward: input-gradient addend \(inputGradientAddend.shape) differs from input shape \(shape)")
    }
    let backend = Backends.backend(
      op: "layerNormBackward",
      [self, outputGradient, weight, statistics.mean, statistics.inverseStandardDeviation]
        + (inputGradientAddend.map { [$0] } ?? []))
    let dx = Tensor(uninitializedShape: shape, device: device)
    let dWeight = Tensor(uninitializedShape: [c], device: device)
    let dBias = Tensor(uninitializedShape: [c], device: device)
    backend.layerNormBackward(
      self, outputGradient: outputGradient, weight: weight, mean: statistics.mean,
      inverseStandardDeviation: statistics.inverseStandardDeviation, inputGradient: dx,
      inputGradientAddend: inputGradientAddend, weightGradient: dWeight, biasGradient: dBias)
    return (dx, dWeight, dBias)
  }
}
