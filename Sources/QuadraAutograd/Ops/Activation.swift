extension Variable {
  /// Differentiable GELU, erf form: `½·x·(1 + erf(x/√2))`.
  public func gelu() -> Variable {
    let x = value
    return Variable.record(x.gelu(), inputs: [self]) { g in [x.geluBackward(outputGradient: g)] }
  }

  /// Differentiable fused `GELU(x + b)` with `b` of shape `[C]` along the last axis.
  public func biasGELU(bias: Variable) -> Variable {
    let x = value, b = bias.value
    let tracks = (tracksGradient, bias.tracksGradient)
    return Variable.record(x.biasGELU(bias: b), inputs: [self, bias]) { g in
      let (dx, dBias) = x.biasGELUBackward(bias: b, outputGradient: g)
      return [tracks.0 ? dx : nil, tracks.1 ? dBias : nil]
    }
  }

  /// Differentiable softmax over the last axis; backward is `y ⊙ (g − Σ g ⊙ y)` per row.
  public func softmax() -> Variable {
    let y = value.softmax()
    return Variable.record(y, inputs: [self]) { g in
      let gy = g.multiplying(y)
      return [gy.subtracting(y.multiplying(gy.sum(alongAxes: [-1], keepingDimensions: true)))]
    }
  }
}

/// Differentiable GELU, erf form (PyTorch's default): `½·x·(1 + erf(x/√2))`.
public func gelu(_ x: Variable) -> Variable { x.gelu() }
