// GELU (exact erf form, PyTorch's default), the fused bias + GELU of MLP blocks, and softmax.

extension Tensor {
  /// GELU(x) = x·Φ(x) = ½·x·(1 + erf(x/√2)), elementwise (absolute error < 10⁻⁶ relative to |x|).
  public func gelu() -> Tensor {
    let result = Tensor(uninitializedShape: shape, device: device)
    backend.gelu(self, bias: nil, into: result)
    return result
  }

  /// ∂L/∂x of ``gelu()`` given ∂L/∂y: `g · (Φ(x) + x·φ(x))`; `self` is the forward input x.
  public func geluBackward(outputGradient: Tensor) -> Tensor {
    opPrecondition(
      outputGradient.shape == shape, "geluBackward: gradient \(outputGradient.shape) differs from input \(shape)")
    let backend = Backends.backend(op: "geluBackward", self, outputGradient)
    let result = Tensor(uninitializedShape: shape, device: device)
    backend.geluBackward(self, bias: nil, outputGradient: outputGradient, inputGradient: result, biasGradient: nil)
    return result
  }

  private func biasChecks(_ bias: Tensor, op: String) -> any Backend {
    opPrecondition(rank >= 1 && shape[rank - 1] > 0, "\(op): input shape \(shape) needs a non-empty last axis")
    let c = shape[rank - 1]
    opPrecondition(bias.shape == [c], "\(op): bias shape \(bias.shape) must be [\(c)] for input \(shape)")
    return Backends.backend(op: op, self, bias)
  }

  /// GELU(x + b) with `b` of shape `[C]` added along the last axis, in one pass
  /// (the MLP's first linear layer leaves its bias to this kernel).
  public func biasGELU(bias: Tensor) -> Tensor {
    let backend = biasChecks(bias, op: "biasGELU")
    let result = Tensor(uninitializedShape: shape, device: device)
    backend.gelu(self, bias: bias, into: result)
    return result
  }

  /// Gradients of ``biasGELU(bias:)`` given ∂L/∂y; `self` is the forward input (before the bias).
  ///
  /// - Returns: ∂L/∂x = g·GELU′(x + b), and ∂L/∂b, its sum over all rows (per-thread partials).
  public func biasGELUBackward(bias: Tensor, outputGradient: Tensor) -> (input: Tensor, bias: Tensor) {
    _ = biasChecks(bias, op: "biasGELUBackward")
    opPrecondition(
      outputGradient.shape == shape,
      "biasGELUBackward: gradient \(outputGradient.shape) differs from input \(shape)")
    let backend = Backends.backend(op: "biasGELUBackward", self, bias, outputGradient)
    let dx = Tensor(uninitializedShape: shape, device: device)
    let dBias = Tensor(uninitializedShape: bias.shape, device: device)
    backend.geluBackward(self, bias: bias, outputGradient: outputGradient, inputGradient: dx, biasGradient: dBias)
    return (dx, dBias)
  }

  /// Softmax over the last axis: `softmax(x)ᵢ = e^(xᵢ − m) / Σⱼ e^(xⱼ − m)` with m the row maximum
  /// (subtracting it keeps e^x finite).
  public func softmax() -> Tensor {
    opPrecondition(rank >= 1 && shape[rank - 1] > 0, "softmax: input shape \(shape) needs a non-empty last axis")
    let result = Tensor(uninitializedShape: shape, device: device)
    backend.softmax(self, into: result)
    return result
  }
}
