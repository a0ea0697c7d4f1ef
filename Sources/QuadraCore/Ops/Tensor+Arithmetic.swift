// Elementwise arithmetic with NumPy-style broadcasting, scalar arithmetic, and sums.
//
// Broadcasting aligns shapes from the right; each pair of dimensions must be equal or
// one of them 1. The kernels collapse the loops first (see `BroadcastPlan`), so the two
// cases the models use most — equal shapes and a trailing channel vector such as
// `[N,H,W,C] ⊙ [C]` (layer scale, biases) — run as contiguous SIMD loops.

extension Tensor {
  /// The shape two operands broadcast to; traps with both shapes when they are incompatible.
  public static func broadcastShape(_ a: [Int], _ b: [Int], op: String = "broadcast") -> [Int] {
    BroadcastPlan(a, b, op: op).outputShape
  }

  private func broadcasting(_ op: BinaryOperator, _ other: Tensor, name: String) -> Tensor {
    let plan = BroadcastPlan(shape, other.shape, op: name)
    let backend = Backends.backend(op: name, self, other)
    let result = Tensor(uninitializedShape: plan.outputShape, device: device)
    backend.binary(op, self, other, into: result)
    return result
  }

  /// Elementwise `self + other`, broadcasting.
  public func adding(_ other: Tensor) -> Tensor { broadcasting(.add, other, name: "add") }

  /// Elementwise `self − other`, broadcasting.
  public func subtracting(_ other: Tensor) -> Tensor { broadcasting(.subtract, other, name: "subtract") }

  /// Elementwise (Hadamard) product `self ⊙ other`, broadcasting.
  public func multiplying(_ other: Tensor) -> Tensor { broadcasting(.multiply, other, name: "multiply") }

  /// Every element multiplied by `factor`.
  public func scaled(by factor: Float) -> Tensor {
    multiplying(Tensor(factor, device: device))
  }

  /// `scalar` added to every element.
  public func adding(_ scalar: Float) -> Tensor {
    adding(Tensor(scalar, device: device))
  }

  /// Every element negated.
  public func negated() -> Tensor { scaled(by: -1) }

  /// This tensor repeated along broadcast axes to `shape` (the inverse of ``sum(toShape:)``).
  public func broadcasted(to shape: [Int]) -> Tensor {
    let plan = BroadcastPlan(shape, self.shape, op: "broadcasted(to:)")
    opPrecondition(
      plan.outputShape == shape, "broadcasted(to:): shape \(self.shape) cannot be broadcast to \(shape)")
    if self.shape == shape { return self }
    let result = Tensor(uninitializedShape: shape, device: device)
    // The first operand only stands in for the output shape: `.second` does not read it.
    backend.binary(.second, result, self, into: result)
    return result
  }

  /// Updates `self` in place with a broadcast operand whose broadcast shape is `self`'s.
  private mutating func formBroadcasting(_ op: BinaryOperator, _ other: Tensor, name: String) {
    let plan = BroadcastPlan(shape, other.shape, op: name)
    opPrecondition(
      plan.outputShape == shape,
      "\(name): in-place result must keep shape \(shape), but \(shape) and \(other.shape) broadcast to \(plan.outputShape)")
    let backend = Backends.backend(op: name, self, other)
    makeStorageUnique()
    backend.binary(op, self, other, into: self)
  }

  public static func + (lhs: Tensor, rhs: Tensor) -> Tensor { lhs.adding(rhs) }
  public static func - (lhs: Tensor, rhs: Tensor) -> Tensor { lhs.subtracting(rhs) }
  public static func * (lhs: Tensor, rhs: Tensor) -> Tensor { lhs.multiplying(rhs) }
  public static func + (lhs: Tensor, rhs: Float) -> Tensor { lhs.adding(rhs) }
  public static func + (lhs: Float, rhs: Tensor) -> Tensor { rhs.adding(lhs) }
  public static func - (lhs: Tensor, rhs: Float) -> Tensor { lhs.adding(-rhs) }
  public static func - (lhs: Float, rhs: Tensor) -> Tensor { Tensor(lhs, device: rhs.device).subtracting(rhs) }
  public static func * (lhs: Tensor, rhs: Float) -> Tensor { lhs.scaled(by: rhs) }
  public static func * (lhs: Float, rhs: Tensor) -> Tensor { rhs.scaled(by: lhs) }
  public static prefix func - (operand: Tensor) -> Tensor { operand.negated() }

  /// In-place `lhs += rhs`; `rhs` broadcasts to `lhs`'s shape (e.g. gradient accumulation).
  public static func += (lhs: inout Tensor, rhs: Tensor) { lhs.formBroadcasting(.add, rhs, name: "+=") }
  /// In-place `lhs −= rhs`; `rhs` broadcasts to `lhs`'s shape.
  public static func -= (lhs: inout Tensor, rhs: Tensor) {
    lhs.formBroadcasting(.subtract, rhs, name: "-=")
  }
  /// In-place `lhs ⊙= rhs`; `rhs` broadcasts to `lhs`'s shape.
  public static func *= (lhs: inout Tensor, rhs: Tensor) {
    lhs.formBroadcasting(.multiply, rhs, name: "*=")
  }
  /// In-place scaling.
  public static func *= (lhs: inout Tensor, rhs: Float) {
    lhs.formBroadcasting(.multiply, Tensor(rhs, device: lhs.device), name: "*=")
  }
}

// MARK: - Sums and means

extension Tensor {
  /// Sums a gradient of a broadcast result back to the shape of the operand that was broadcast.
  ///
  /// `shape` must broadcast to `self.shape`: it is right-aligned, and each of its dimensions
  /// equals the corresponding one of `self` or is 1. Leading axes missing from `shape` and
  /// axes where it has 1 are summed: `[N,H,W,C].sum(toShape: [C])` is the bias gradient.
  public func sum(toShape target: [Int]) -> Tensor {
    if target == shape { return self }
    opPrecondition(
      target.count <= rank,
      "sum(toShape:): cannot reduce shape \(shape) to the higher-rank shape \(target)")
    let padded = [Int](repeating: 1, count: rank - target.count) + target
    var keep = [Bool](repeating: false, count: rank)
    for axis in 0..<rank {
      opPrecondition(
        padded[axis] == shape[axis] || padded[axis] == 1,
        "sum(toShape:): shape \(target) does not broadcast to \(shape)")
      keep[axis] = padded[axis] == shape[axis]
    }
    let result = Tensor(uninitializedShape: target, device: device)
    backend.sum(self, keeping: keep, into: result)
    return result
  }

  /// `(a ⊙ b).sum(toShape: shape)` — the gradient of a broadcast product with respect to the
  /// broadcast operand — without materializing `a ⊙ b` in the common case of same-shape `a`, `b`
  /// reduced to a trailing vector `[C]` (layer scale γ): per-thread partial column sums of `a·b`.
  public static func sumOfProducts(_ a: Tensor, _ b: Tensor, toShape target: [Int]) -> Tensor {
    let c = target.last ?? 1
    let trailingVector = a.shape == b.shape && a.rank >= 1 && a.shape[a.rank - 1] == c && c > 0
      && target.dropLast().allSatisfy { $0 == 1 } && target.count <= a.rank && a.count > c
    guard trailingVector else { return a.multiplying(b).sum(toShape: target) }
    let backend = Backends.backend(op: "sumOfProducts", a, b)
    let result = Tensor(uninitializedShape: target, device: a.device)
    backend.sumOfProducts(a, b, into: result)
    return result
  }

  /// The sum of all elements as a rank-0 tensor (accumulated in Double).
  public func sum() -> Tensor {
    Tensor(Float(backend.sumAll(self)), device: device)
  }

  /// The mean of all elements as a rank-0 tensor.
  public func mean() -> Tensor {
    opPrecondition(count > 0, "mean: tensor of shape \(shape) is empty")
    return Tensor(Float(backend.sumAll(self) / Double(count)), device: device)
  }

  /// Normalizes axis indices (negative ones count from the end) and checks them.
  public func normalizedAxes(_ axes: [Int], op: String) -> [Int] {
    let result = axes.map { $0 < 0 ? $0 + rank : $0 }
    opPrecondition(
      result.allSatisfy { $0 >= 0 && $0 < rank } && Set(result).count == result.count,
      "\(op): axes \(axes) are invalid or repeated for shape \(shape)")
    return result
  }

  /// The shape left after reducing `axes` (kept as size 1 when `keepingDimensions`).
  public func reducedShape(alongAxes axes: [Int], keepingDimensions: Bool) -> [Int] {
    var result: [Int] = []
    for axis in 0..<rank {
      if axes.contains(axis) {
        if keepingDimensions { result.append(1) }
      } else {
        result.append(shape[axis])
      }
    }
    return result
  }

  /// Sums over `axes` (negative axes count from the end); they are dropped unless `keepingDimensions`.
  public func sum(alongAxes axes: [Int], keepingDimensions: Bool = false) -> Tensor {
    let axes = normalizedAxes(axes, op: "sum(alongAxes:)")
    let result = Tensor(
      uninitializedShape: reducedShape(alongAxes: axes, keepingDimensions: keepingDimensions), device: device)
    backend.sum(self, keeping: (0..<rank).map { !axes.contains($0) }, into: result)
    return result
  }

  /// Means over `axes` (negative axes count from the end); they are dropped unless `keepingDimensions`.
  public func mean(alongAxes axes: [Int], keepingDimensions: Bool = false) -> Tensor {
    let normalized = normalizedAxes(axes, op: "mean(alongAxes:)")
    let n = normalized.map { shape[$0] }.reduce(1, *)
    opPrecondition(n > 0, "mean(alongAxes:): reducing empty axes \(axes) of shape \(shape)")
    var result = sum(alongAxes: normalized, keepingDimensions: keepingDimensions)
    result *= 1 / Float(n)
    return result
  }
}

// MARK: - Small helpers

extension Tensor {
  /// A tensor of ones.
  public init(ones shape: [Int], device: Device = .cpu) { self.init(shape: shape, repeating: 1, device: device) }

  /// Zeros with the shape of `other`.
  public static func zeros(like other: Tensor) -> Tensor { Tensor(zeros: other.shape, device: other.device) }

  /// Ones with the shape of `other`.
  public static func ones(like other: Tensor) -> Tensor { Tensor(ones: other.shape, device: other.device) }

  /// The largest absolute element (0 for an empty tensor).
  public func maxAbs() -> Float { backend.maxAbs(self) }

  /// The sum of squared elements, accumulated in Double (e.g. for gradient-norm clipping).
  public func squaredSum() -> Double { backend.squaredSum(self) }

  /// Whether the shapes match and `|a − b| ≤ absoluteTolerance + relativeTolerance·|b|` elementwise
  /// (NumPy's `allclose`, with `other` as the reference). NaNs never compare close.
  public func allClose(_ other: Tensor, relativeTolerance: Float = 1e-5, absoluteTolerance: Float = 1e-6) -> Bool {
    guard shape == other.shape else { return false }
    let (a, b) = (scalars, other.scalars)
    for i in a.indices where !(Swift.abs(a[i] - b[i]) <= absoluteTolerance + relativeTolerance * Swift.abs(b[i])) {
      return false
    }
    return true
  }
}
