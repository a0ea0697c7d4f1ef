/// Data movement: axis permutation, concatenation and splitting.
enum ShapeKernels {
  /// Copies `input` (row-major `shape`) to `output` with output axis i taken from input axis `axes[i]`.
  ///
  /// Size-1 axes are dropped and runs of axes that stay adjacent and in order are merged first,
  /// so NCHW → NHWC becomes a batch of `[C, HW]` → `[HW, C]` transposes, done in cache-sized
  /// tiles. When the innermost axis stays innermost, whole contiguous runs are copied.
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

  /// `output[b][c][r] = input[b][r][c]` for `batch` matrices of `rows × columns`, in 32×32 tiles
  /// (each tile's reads and writes stay in L1).
  static func transpose(
    _ input: UnsafePointer<Float>, batch: Int, rows: Int, columns: Int, into output: UnsafeMutablePointer<Float>
  ) {
    let tile = 32
    let rowTiles = (rows + tile - 1) / tile
    let matrix = rows * columns
    Parallel.forRanges(batch * rowTiles, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / (tile * columns)))
    { range in
      for item in range {
        let b = item / rowTiles
        let r0 = (item % rowTiles) * tile
        let r1 = Swift.min(rows, r0 + tile)
        let src = input + b * matrix, dst = output + b * matrix
        var c0 = 0
        while c0 < columns {
          let c1 = Swift.min(columns, c0 + tile)
          for r in r0..<r1 {
            let row = src + r * columns
            for c in c0..<c1 { dst[c * rows + r] = row[c] }
          }
          c0 = c1
        }
      }
    }
  }

  /// Copies `parts` side by side: each has `outer` rows of `widths[i]` elements; the output rows
  /// have `Σ widths` elements.
  static func concatenate(
    _ parts: [UnsafePointer<Float>], widths: [Int], outer: Int, into output: UnsafeMutablePointer<Float>
  ) {
    let total = widths.reduce(0, +)
    Parallel.forRanges(outer, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / Swift.max(total, 1))) {
      range in
      for row in range {
        var offset = row * total
        for (part, width) in zip(parts, widths) {
          (output + offset).update(from: part + row * width, count: width)
          offset += width
        }
      }
    }
  }

  /// The inverse of ``concatenate(_:widths:outer:into:)``.
  static func split(
    _ input: UnsafePointer<Float>, widths: [Int], outer: Int, into parts: [UnsafeMutablePointer<Float>]
  ) {
    let total = widths.reduce(0, +)
    Parallel.forRanges(outer, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / Swift.max(total, 1))) {
      range in
      for row in range {
        var offset = row * total
        for (part, width) in zip(parts, widths) {
          (part + row * width).update(from: input + offset, count: width)
          offset += width
        }
      }
    }
  }
}
