/// Data movement: axis permutation, concatenation and splitting.
enum ShapeKernels {
  /// Copies `input` (row-major `shape`) to `output` with output axis i taken from input axis `axes[i]`.
  ///
  /// Size-1 axes are dropped and runs of axes that stay adjacent and in order are merged first,
  /// so NCHW → NHWC becomes a batch of `[C, HW]` → `[HW, C]` transposes, done in 8×8 register
  /// blocks. When the innermost axis stays innermost, whole contiguous runs are copied.
  static func permute(
    _ input: UnsafePointer<Float>, shape: [Int], axes: [Int], into output: UnsafeMutablePointer<Float>
  ) {
    let count = shape.reduce(1, *)
    if count == 0 { return }
    // Non-trivial input axes, renumbered 0..<m.
    let nontrivial = (0..<shape.count).filter { shape[$0] != 1 }
    var renumbered = [Int](repeating: -1, count: shape.count)
    for (i, axis) in nontrivial.enumerated() { renumbered[axis] = i }
    let order = axes.filter { shape[$0] != 1 }.map { renumbered[$0] }
    // Group output-adjacent axes that are consecutive in the input.
    var groups: [[Int]] = []
    for axis in order {
      if let last = groups.last?.last, axis == last + 1 {
        groups[groups.count - 1].append(axis)
      } else {
        groups.append([axis])
      }
    }
    let rank = groups.count
    if rank <= 1 {
      output.update(from: input, count: count)
      return
    }
    // Collapsed input dims are the groups in input order; perm maps output group → input group.
    let inputOrder = groups.indices.sorted { groups[$0][0] < groups[$1][0] }
    var inputGroupPosition = [Int](repeating: 0, count: rank)
    for (position, group) in inputOrder.enumerated() { inputGroupPosition[group] = position }
    let dims = inputOrder.map { groups[$0].map { shape[nontrivial[$0]] }.reduce(1, *) }
    let perm = (0..<rank).map { inputGroupPosition[$0] }
    var inStrides = [Int](repeating: 1, count: rank)
    for axis in stride(from: rank - 2, through: 0, by: -1) { inStrides[axis] = inStrides[axis + 1] * dims[axis + 1] }
    let outDims = perm.map { dims[$0] }
    let outStridesIn = perm.map { inStrides[$0] }

    let batchedTranspose =
      perm[rank - 1] == rank - 2 && perm[rank - 2] == rank - 1 && (0..<(rank - 2)).allSatisfy { perm[$0] == $0 }
    if batchedTranspose {
      let rows = dims[rank - 2], columns = dims[rank - 1]
      let batch = count / (rows * columns)
      transpose(input, batch: batch, rows: rows, columns: columns, into: output)
      return
    }

    // General case: walk the output's outer positions with an odometer over input offsets;
    // the innermost output axis is a contiguous copy or a strided gather.
    let inner = outDims[rank - 1]
    let innerStride = outStridesIn[rank - 1]
    let outerCount = count / inner
    Parallel.forRanges(outerCount, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / inner)) { range in
      withUnsafeTemporaryAllocation(of: Int.self, capacity: rank) { index in
        var rest = range.lowerBound
        var offset = 0
        for axis in stride(from: rank - 2, through: 0, by: -1) {
          index[axis] = rest % outDims[axis]
          rest /= outDims[axis]
          offset += index[axis] * outStridesIn[axis]
        }
        for outer in range {
          let out = output + outer * inner
          if innerStride == 1 {
            out.update(from: input + offset, count: inner)
          } else {
            for j in 0..<inner { out[j] = input[offset + j * innerStride] }
          }
          var axis = rank - 2
          while axis >= 0 {
            index[axis] += 1
            offset += outStridesIn[axis]
            if index[axis] < outDims[axis] { break }
            offset -= outStridesIn[axis] * outDims[axis]
            index[axis] = 0
            axis -= 1
          }
        }
      }
    }
  }

  /// `output[b][c][r] = input[b][r][c]` for `batch` matrices of `rows × columns`.
  ///
  /// Strips of eight input rows are transposed in 8×8 register blocks (eight vector loads,
  /// eight vector stores); measured ~1.5× faster than 32×32 scalar tiles on AVX2, and no
  /// faster with an extra level of cache tiling. Ragged edges are copied one element at a time.
  static func transpose(
    _ input: UnsafePointer<Float>, batch: Int, rows: Int, columns: Int, into output: UnsafeMutablePointer<Float>
  ) {
    let strips = (rows + 7) / 8
    let matrix = rows * columns
    Parallel.forRanges(batch * strips, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / (8 * columns))) {
      range in
      for item in range {
        let b = item / strips
        let r0 = (item % strips) * 8
        let src = input + b * matrix, dst = output + b * matrix
        guard r0 + 8 <= rows else {
          for r in r0..<rows {
            for c in 0..<columns { dst[c * rows + r] = src[r * columns + c] }
          }
          continue
        }
        var c0 = 0
        while c0 + 8 <= columns {
          transpose8x8(src + r0 * columns + c0, columns, dst + c0 * rows + r0, rows)
          c0 += 8
        }
        for c in c0..<columns {
          for r in r0..<(r0 + 8) { dst[c * rows + r] = src[r * columns + c] }
        }
      }
    }
  }

  /// Transposes one 8×8 block: row i of `source` (stride `sourceStride`) becomes column i of
  /// `destination` (stride `destinationStride`).
  @inline(__always)
  static func transpose8x8(
    _ s: UnsafePointer<Float>, _ sourceStride: Int, _ d: UnsafeMutablePointer<Float>, _ destinationStride: Int
  ) {
    typealias K = ElementwiseKernels
    let m0 = K.load(s), m1 = K.load(s + sourceStride), m2 = K.load(s + 2 * sourceStride)
    let m3 = K.load(s + 3 * sourceStride), m4 = K.load(s + 4 * sourceStride), m5 = K.load(s + 5 * sourceStride)
    let m6 = K.load(s + 6 * sourceStride), m7 = K.load(s + 7 * sourceStride)
    for j in 0..<8 {
      K.store(SIMD8(m0[j], m1[j], m2[j], m3[j], m4[j], m5[j], m6[j], m7[j]), d + j * destinationStride)
    }
  }
}
