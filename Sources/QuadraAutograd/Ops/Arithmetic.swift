// Differentiable broadcasting arithmetic and sums.
//
// Each pullback returns nil for inputs that do not track gradients, and reduces the gradient
// of a broadcast operand back to its shape with `sum(toShape:)`.

extension Variable {
  public static func + (lhs: Variable, rhs: Variable) -> Variable {
    let (lhsShape, rhsShape) = (lhs.shape, rhs.shape)
    let (lhsTracks, rhsTracks) = (lhs.tracksGradient, rhs.tracksGradient)
    return record(lhs.value.adding(rhs.value), inputs: [lhs, rhs]) { g in
      [lhsTracks ? g.sum(toShape: lhsShape) : nil, rhsTracks ? g.sum(toShape: rhsShape) : nil]
    }
  }

  public static func - (lhs: Variable, rhs: Variable) -> Variable {
    let (lhsShape, rhsShape) = (lhs.shape, rhs.shape)
    let (lhsTracks, rhsTracks) = (lhs.tracksGradient, rhs.tracksGradient)
    return record(lhs.value.subtracting(rhs.value), inputs: [lhs, rhs]) { g in
      [lhsTracks ? g.sum(toShape: lhsShape) : nil, rhsTracks ? g.sum(toShape: rhsShape).negated() : nil]
    }
  }

  /// Elementwise product with broadcasting (e.g. layer scale `x ⊙ γ` with γ of shape `[C]`).
  public static func * (lhs: Variable, rhs: Variable) -> Variable {
    let (lhsShape, rhsShape) = (lhs.shape, rhs.shape)
    // Keep only the values a pullback will read: ∂/∂lhs needs rhs and vice versa.
    let rhsValue = lhs.tracksGradient ? rhs.value : nil
    let lhsValue = rhs.tracksGradient ? lhs.value : nil
    return record(lhs.value.multiplying(rhs.value), inputs: [lhs, rhs]) { g in
      [
        rhsValue.map { Tensor.sumOfProducts(g, $0, toShape: lhsShape) },
        lhsValue.map { Tensor.sumOfProducts(g, $0, toShape: rhsShape) },
      ]
    }
  }

  public static func * (lhs: Variable, rhs: Float) -> Variable {
    record(lhs.value.scaled(by: rhs), inputs: [lhs]) { g in [g.scaled(by: rhs)] }
  }

  public static func * (lhs: Float, rhs: Variable) -> Variable { rhs * lhs }

  public static func + (lhs: Variable, rhs: Float) -> Variable {
    record(lhs.value.adding(rhs), inputs: [lhs]) { g in [g] }
  }

  public static func + (lhs: Float, rhs: Variable) -> Variable { rhs + lhs }

  public static func - (lhs: Variable, rhs: Float) -> Variable { lhs + (-rhs) }

  public static func - (lhs: Float, rhs: Variable) -> Variable {
    record(Tensor(lhs).subtracting(rhs.value), inputs: [rhs]) { g in [g.negated()] }
  }

  public static prefix func - (operand: Variable) -> Variable {
    record(operand.value.negated(), inputs: [operand]) { g in [g.negated()] }
  }

  /// Every element multiplied by `factor`.
  public func scaled(by factor: Float) -> Variable { self * factor }

  /// The sum of all elements (rank 0).
  public func sum() -> Variable {
    let shape = self.shape
    return Variable.record(value.sum(), inputs: [self]) { g in [Tensor(shape: shape, repeating: g.scalar)] }
  }

  /// The mean of all elements (rank 0).
  public func mean() -> Variable {
    let shape = self.shape
    let count = value.count
    return Variable.record(value.mean(), inputs: [self]) { g in
      [Tensor(shape: shape, repeating: g.scalar / Float(count))]
    }
  }

  /// Sums over `axes` (negative count from the end); they are dropped unless `keepingDimensions`.
  public func sum(alongAxes axes: [Int], keepingDimensions: Bool = false) -> Variable {
    let shape = self.shape
    let kept = value.reducedShape(alongAxes: value.normalizedAxes(axes, op: "sum(alongAxes:)"), keepingDimensions: true)
    return Variable.record(value.sum(alongAxes: axes, keepingDimensions: keepingDimensions), inputs: [self]) { g in
      [g.reshaped(kept).broadcasted(to: shape)]
    }
  }

  /// Means over `axes` (negative count from the end); they are dropped unless `keepingDimensions`.
  public func mean(alongAxes axes: [Int], keepingDimensions: Bool = false) -> Variable {
    let shape = self.shape
    let normalized = value.normalizedAxes(axes, op: "mean(alongAxes:)")
    let kept = value.reducedShape(alongAxes: normalized, keepingDimensions: true)
    let scale = 1 / Float(normalized.map { shape[$0] }.reduce(1, *))
    return Variable.record(value.mean(alongAxes: axes, keepingDimensions: keepingDimensions), inputs: [self]) { g in
      [g.scaled(by: scale).reshaped(kept).broadcasted(to: shape)]
    }
  }
}
