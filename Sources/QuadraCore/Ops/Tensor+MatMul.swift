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
    let result = Tensor(uninitializedShape: batched ? [batch, m, n] : [m, n])
    let a = buffer.pointer, b = other.buffer.pointer, c = result.buffer.pointer
    func product(_ index: Int, parallel: Bool) {
      GEMM.multiply(
        m: m, n: n, k: k,
        a: a + index * rows * columns, lda: Swift.max(1, columns), transposeA: transposeSelf,
        b: b + index * otherRows * otherColumns, ldb: Swift.max(1, otherColumns), transposeB: transposeOther,
        c: c + index * m * n, ldc: Swift.max(1, n), alpha: 1, beta: 0, columnBias: nil, parallel: parallel)
    }
    // Small products (e.g. attention maps) are too small to split across threads one by one, so
    // threads take whole batches; large ones run one after another, each using all threads.
    let work = m * n * k
    if batch > 1 && work < 1 << 21 {
      Parallel.forRanges(batch, minimumChunk: Swift.max(1, (1 << 18) / Swift.max(1, work))) { range in
        for index in range { product(index, parallel: false) }
      }
    } else {
      for index in 0..<batch { product(index, parallel: true) }
    }
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
    let result = Tensor(uninitializedShape: Array(shape.dropLast()) + [outFeatures])
    GEMM.multiply(
      m: rows, n: outFeatures, k: inFeatures,
      a: buffer.pointer, lda: Swift.max(1, inFeatures), transposeA: false,
      b: weight.buffer.pointer, ldb: Swift.max(1, inFeatures), transposeB: true,
      c: result.buffer.pointer, ldc: Swift.max(1, outFeatures),
      alpha: 1, beta: 0, columnBias: bias.map { UnsafePointer($0.buffer.pointer) })
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
    let dY = outputGradient.buffer.pointer

    var inputGradient: Tensor?
    if needsInputGradient {
      let result = Tensor(uninitializedShape: input.shape)
      // [rows, out] · [out, in]
      GEMM.multiply(
        m: rows, n: inFeatures, k: outFeatures,
        a: dY, lda: Swift.max(1, outFeatures), transposeA: false,
        b: weight.buffer.pointer, ldb: Swift.max(1, inFeatures), transposeB: false,
        c: result.buffer.pointer, ldc: Swift.max(1, inFeatures))
      inputGradient = result
    }

    // [out, rows] · [rows, in]: dY is read transposed through packing.
    let weightGradient = Tensor(uninitializedShape: weight.shape)
    GEMM.multiply(
      m: outFeatures, n: inFeatures, k: rows,
      a: dY, lda: Swift.max(1, outFeatures), transposeA: true,
      b: input.buffer.pointer, ldb: Swift.max(1, inFeatures), transposeB: false,
      c: weightGradient.buffer.pointer, ldc: Swift.max(1, inFeatures))

    let biasGradient = hasBias ? outputGradient.reshaped([rows, outFeatures]).columnSums() : nil
    return (inputGradient, weightGradient, biasGradient)
  }

  /// Sums a `[rows, columns]` matrix over its rows: `s_j = Σ_i x_ij`, shape `[columns]`.
  ///
  /// Threads take disjoint column ranges (multiples of 8 wide). Each range is swept in groups of
  /// 32 columns whose sums stay in four vector registers while all rows stream past.
  func columnSums() -> Tensor {
    opPrecondition(rank == 2, "columnSums: expected a rank-2 tensor, got \(shape)")
    typealias V = SIMD8<Float>
    let rows = shape[0], columns = shape[1]
    let result = Tensor(zeros: [columns])
    guard rows > 0, columns > 0 else { return result }
    let source = buffer.pointer, sums = result.buffer.pointer
    @inline(__always) func load(_ pointer: UnsafePointer<Float>) -> V {
      UnsafeRawPointer(pointer).loadUnaligned(as: V.self)
    }
    @inline(__always) func store(_ value: V, _ pointer: UnsafeMutablePointer<Float>) {
      UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: V.self)
    }
    let vectorBlocks = (columns + 7) / 8
    Parallel.forRanges(vectorBlocks, minimumChunk: Swift.max(1, (1 << 16) / (rows * 8))) { blocks in
      var j = blocks.lowerBound * 8
      let end = Swift.min(columns, blocks.upperBound * 8)
      while j + 32 <= end {
        var s0 = V(), s1 = V(), s2 = V(), s3 = V()
        var row = UnsafePointer(source + j)
        for _ in 0..<rows {
          s0 += load(row)
          s1 += load(row + 8)
          s2 += load(row + 16)
          s3 += load(row + 24)
          row += columns
        }
        store(s0, sums + j)
        store(s1, sums + j + 8)
        store(s2, sums + j + 16)
        store(s3, sums + j + 24)
        j += 32
      }
      while j + 8 <= end {
        var s0 = V()
        var row = UnsafePointer(source + j)
        for _ in 0..<rows {
          s0 += load(row)
          row += columns
        }
        store(s0, sums + j)
        j += 8
      }
      while j < end {
        var total: Float = 0
        for i in 0..<rows { total += source[i * columns + j] }
        sums[j] = total
        j += 1
      }
    }
    return result
  }
}
