extension Tensor {
  /// Matrix product `op(self) · op(other)`, with `op(X) = X` or `Xᵀ` (the last two dimensions).
  ///
  /// Rank 2 × rank 2: `[m, k] · [k, n] → [m, n]`. Rank 3 × rank 3 is a batched product over the
  /// leading dimension, which must be equal: `[b, m, k] · [b, k, n] → [b, m, n]`.
  /// Transposition is folded into the GEMM's packing, so no transposed copy is made.
  public func matmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false) -> Tensor {
    opPrecondition(
      (rank == 2 && other.rank == 2) || (rank == 3 && other.rank == 3),
      "matmul: expected rank-2 × rank-2 or rank-3 × rank-3 tensors, got \(shape) and \(other.shape)")
    let batched = rank == 3
    let batch = batched ? shape[0] : 1
    opPrecondition(
      !batched || other.shape[0] == batch,
      "matmul: batch sizes differ in \(shape) and \(other.shape)")
    let rows = shape[rank - 2], columns = shape[rank - 1]
    let otherRows = other.shape[rank - 2], otherColumns = other.shape[rank - 1]
    let m = transposeSelf ? columns : rows
    let k = transposeSelf ? rows : columns
    let otherK = transposeOther ? otherColumns : otherRows
    let n = transposeOther ? otherRows : otherColumns
    opPrecondition(
      k == otherK,
      "matmul: inner dimensions differ: \(shape)\(transposeSelf ? "ᵀ" : "") · \(other.shape)\(transposeOther ? "ᵀ" : "") (\(k) vs \(otherK))"
    )
    let backend = Backends.backend(op: "matmul", self, other)
    let result = Tensor(uninitializedShape: batched ? [batch, m, n] : [m, n], device: device)
    backend.matrixMultiply(
      self, other, MatrixProduct(batch: batch, m: m, n: n, k: k, transposeA: transposeSelf, transposeB: transposeOther),
      columnBias: nil, into: result)
    return result
  }

  /// Affine map over the last dimension: `y = x · Wᵀ + b`.
  ///
  /// `self` is `[..., in]`, `weight` is `[out, in]` (PyTorch's layout) and `bias` is `[out]`;
  /// the result is `[..., out]`. The leading dimensions are flattened into the GEMM's rows, and
  /// the bias is added in the GEMM's epilogue while each output tile is still in registers.
  public func linear(weight: Tensor, bias: Tensor?) -> Tensor {
    opPrecondition(rank >= 1, "linear: input must have rank ≥ 1, got shape \(shape)")
    opPrecondition(weight.rank == 2, "linear: weight must be [out, in], got \(weight.shape)")
    let inFeatures = shape[rank - 1]
    let outFeatures = weight.shape[0]
    opPrecondition(
      weight.shape[1] == inFeatures,
      "linear: input \(shape) has \(inFeatures) features but weight \(weight.shape) expects \(weight.shape[1])")
    if let bias {
      opPrecondition(
        bias.shape == [outFeatures], "linear: bias \(bias.shape) does not match weight \(weight.shape) (want [\(outFeatures)])")
    }
    let rows = shape.dropLast().reduce(1, *)
    let backend = Backends.backend(op: "linear", [self, weight] + (bias.map { [$0] } ?? []))
    let result = Tensor(uninitializedShape: Array(shape.dropLast()) + [outFeatures], device: device)
    backend.matrixMultiply(
      self, weight, MatrixProduct(m: rows, n: outFeatures, k: inFeatures, transposeB: true), columnBias: bias,
      into: result)
    return result
  }

  /// Gradients of ``linear(weight:bias:)`` given `dY = ∂L/∂y` (shape `[..., out]`):
  /// `dX = dY · W`, `dW = dYᵀ · X` (summed over all leading positions) and `db = Σ_rows dY`.
  ///
  /// - Parameters:
  ///   - needsInputGradient: false skips `dX` (e.g. for the first layer, whose input is data).
  ///   - hasBias: whether to compute `db`.
  public static func linearBackward(
    input: Tensor, weight: Tensor, outputGradient: Tensor, needsInputGradient: Bool = true, hasBias: Bool
  ) -> (input: Tensor?, weight: Tensor, bias: Tensor?) {
    opPrecondition(input.rank >= 1 && weight.rank == 2, "linearBackward: input \(input.shape), weight \(weight.shape)")
    let inFeatures = input.shape[input.rank - 1]
    let outFeatures = weight.shape[0]
    opPrecondition(
      weight.shape[1] == inFeatures && outputGradient.shape == Array(input.shape.dropLast()) + [outFeatures],
      "linearBackward: input \(input.shape), weight \(weight.shape) and output gradient \(outputGradient.shape) do not match"
    )
    let rows = input.shape.dropLast().reduce(1, *)
    let backend = Backends.backend(op: "linearBackward", input, weight, outputGradient)
    let device = input.device

    var inputGradient: Tensor?
    if needsInputGradient {
      // dX = dY · W: [rows, out] · [out, in]
      let result = Tensor(uninitializedShape: input.shape, device: device)
      backend.matrixMultiply(
        outputGradient, weight, MatrixProduct(m: rows, n: inFeatures, k: outFeatures), columnBias: nil, into: result)
      inputGradient = result
    }

    // dW = dYᵀ · X: [out, rows] · [rows, in]; dY is read transposed.
    let weightGradient = Tensor(uninitializedShape: weight.shape, device: device)
    backend.matrixMultiply(
      outputGradient, input, MatrixProduct(m: outFeatures, n: inFeatures, k: rows, transposeA: true), columnBias: nil,
      into: weightGradient)

    let biasGradient = hasBias ? outputGradient.reshaped([rows, outFeatures]).sum(alongAxes: [0]) : nil
    return (inputGradient, weightGradient, biasGradient)
  }
}
