/// Building blocks shared by the elementwise, reduction and normalization kernels:
/// unaligned SIMD loads/stores, chunked parallel loops with a chunk index (for
/// per-thread partial sums), the broadcasting iteration plan, and the generic
/// binary-operation and sum-reduction loops.
enum ElementwiseKernels {
  /// Elements below which a loop stays on one thread (dispatch costs more than the work).
  static let parallelGrain = 1 << 15

  @inline(__always)
  static func load(_ pointer: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(pointer).loadUnaligned(as: SIMD8<Float>.self)
  }

  @inline(__always)
  static func load(_ pointer: UnsafeMutablePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(pointer).loadUnaligned(as: SIMD8<Float>.self)
  }

  @inline(__always)
  static func store(_ value: SIMD8<Float>, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: SIMD8<Float>.self)
  }

  /// The sum of `v`'s lanes as a tree, `((v₀ + v₄) + (v₂ + v₆)) + ((v₁ + v₅) + (v₃ + v₇))`: three dependent
  /// adds where `SIMD.sum()`, which must keep the lanes' order, chains seven (about 21 cycles of latency,
  /// in kernels that reduce once per short row, such as LayerNorm's rows of 40–160 channels).
  @inline(__always)
  static func laneSum(_ v: SIMD8<Float>) -> Float {
    let quarter = v.lowHalf + v.highHalf
    let pair = quarter.lowHalf + quarter.highHalf
    return pair[0] + pair[1]
  }

  /// The most partial results one reduction is split into.
  static let maximumReductionChunks = 16
  /// The most floats all partial results of one reduction may hold together (4 MiB).
  static let maximumReductionScratch = 1 << 20

  /// How many chunks a reduction over `count` items splits into, each of at least `minimumChunk`
  /// items and with a partial result of `partialSize` floats.
  ///
  /// The count depends on the sizes only, never on the thread count: the chunks are summed in
  /// chunk order, so a reduction gives the same bits on 1, 2 or 64 threads (the threads share
  /// the fixed chunks). At most ``maximumReductionChunks``, so on 2 to 16 threads the chunks
  /// divide evenly for the common counts (16 = 2·8 = 4·4) and the extra partial sums cost
  /// `(chunks − 1) · partialSize` additions, small next to the `count · partialSize` of the work.
  static func reductionChunkCount(_ count: Int, minimumChunk: Int, partialSize: Int = 1) -> Int {
    let fitting = Swift.max(1, maximumReductionScratch / Swift.max(partialSize, 1))
    return Swift.max(1, Swift.min(maximumReductionChunks, fitting, count / Swift.max(minimumChunk, 1)))
  }

  /// Calls `body(chunk, range)` for `chunks` contiguous ranges covering `0..<count`, in parallel.
  ///
  /// Unlike `Parallel.forRanges`, the body learns its chunk index, so each chunk can own a slot
  /// of a partial-sum buffer; the partials are combined afterwards without locks. The threads
  /// take contiguous runs of chunks; the chunk boundaries depend on `count` and `chunks` only.
  static func forChunks(_ count: Int, chunks: Int, _ body: (Int, Range<Int>) -> Void) {
    guard count > 0 else { return }
    if chunks <= 1 {
      body(0, 0..<count)
      return
    }
    Parallel.forEach(chunks) { chunk in
      body(chunk, (count * chunk / chunks)..<(count * (chunk + 1) / chunks))
    }
  }

  // MARK: - Dense vector loops

  /// `out[i] *= x[i]` for `i < n`.
  @inline(__always)
  static func multiply(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count n: Int) {
    var i = 0
    while i + 8 <= n {
      store(load(out + i) * load(x + i), out + i)
      i += 8
    }
    while i < n {
      out[i] *= x[i]
      i += 1
    }
  }

  /// `out[i] += x[i]` for `i < n`.
  @inline(__always)
  static func accumulate(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, count n: Int) {
    var i = 0
    while i + 8 <= n {
      store(load(out + i) + load(x + i), out + i)
      i += 8
    }
    while i < n {
      out[i] += x[i]
      i += 1
    }
  }

  /// `y = x + γ ⊙ o` row by row (`γ` along the last axis, `columns` long): the layer-scaled residual
  /// join of a MetaFormer block.
  @inline(__always)
  static func scaledAdd(
    _ x: UnsafePointer<Float>, _ o: UnsafePointer<Float>, scale: UnsafePointer<Float>, rows: Int, columns c: Int,
    into y: UnsafeMutablePointer<Float>
  ) {
    for row in 0..<rows {
      let xr = x + row * c, or = o + row * c, yr = y + row * c
      var j = 0
      while j + 8 <= c {
        store(load(xr + j).addingProduct(load(scale + j), load(or + j)), yr + j)
        j += 8
      }
      while j < c {
        yr[j] = xr[j] + scale[j] * or[j]
        j += 1
      }
    }
  }

  /// The gradients of ``scaledAdd(_:_:scale:rows:columns:into:)`` but ∂x (= ∂y) in one pass:
  /// `∂o = γ ⊙ ∂y`, and `Σ_rows ∂y ⊙ o` added to `scaleGradientSum` (`columns` floats).
  @inline(__always)
  static func scaledAddBackward(
    _ o: UnsafePointer<Float>, scale: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>, rows: Int,
    columns c: Int, branchGradient: UnsafeMutablePointer<Float>, scaleGradientSum sum: UnsafeMutablePointer<Float>
  ) {
    for row in 0..<rows {
      let or = o + row * c, dyr = dy + row * c, dor = branchGradient + row * c
      var j = 0
      while j + 8 <= c {
        let g = load(dyr + j)
        store(load(sum + j).addingProduct(g, load(or + j)), sum + j)
        store(g * load(scale + j), dor + j)
        j += 8
      }
      while j < c {
        sum[j] += dyr[j] * or[j]
        dor[j] = dyr[j] * scale[j]
        j += 1
      }
    }
  }

  /// The sum of `n` contiguous elements, with eight-lane partial sums and a Double total.
  @inline(__always)
  static func sum(_ x: UnsafePointer<Float>, count n: Int) -> Double {
    var total = 0.0
    var i = 0
    // Blocks of 1024 keep the Float partials short before they are folded into Double.
    while i < n {
      let end = Swift.min(n, i + 1024)
      var s0 = SIMD8<Float>(), s1 = SIMD8<Float>()
      while i + 16 <= end {
        s0 += load(x + i)
        s1 += load(x + i + 8)
        i += 16
      }
      if i + 8 <= end {
        s0 += load(x + i)
        i += 8
      }
      var tail: Float = 0
      while i < end {
        tail += x[i]
        i += 1
      }
      total += Double((s0 + s1).sum()) + Double(tail)
    }
    return total
  }

  /// The sum of all `n` elements, in parallel.
  static func sumAll(_ x: UnsafePointer<Float>, count n: Int) -> Double {
    let chunks = reductionChunkCount(n, minimumChunk: parallelGrain * 4)
    if chunks == 1 { return sum(x, count: n) }
    let partials = UnsafeMutablePointer<Double>.allocate(capacity: chunks)
    defer { partials.deallocate() }
    forChunks(n, chunks: chunks) { chunk, range in
      partials[chunk] = sum(x + range.lowerBound, count: range.count)
    }
    var total = 0.0
    for chunk in 0..<chunks { total += partials[chunk] }
    return total
  }
}

// MARK: - Broadcasting

/// How two shapes broadcast against each other (NumPy rules: align from the right; each
/// pair of dimensions is equal or one of them is 1), reduced to the fewest loops.
///
/// Adjacent axes on which both inputs broadcast the same way are merged, and size-1 axes are
/// dropped, so same-shape operands become one contiguous loop and `[N,H,W,C] ⊙ [C]` becomes
/// `NHW` runs of a contiguous `C`-vector loop.
struct BroadcastPlan {
  let outputShape: [Int]
  let count: Int
  /// Collapsed loop extents, outermost first (never empty).
  let dims: [Int]
  /// Element strides of each input along the collapsed loops (0 where it is broadcast).
  let stridesA: [Int]
  let stridesB: [Int]

  init(_ a: [Int], _ b: [Int], op: String) {
    let rank = Swift.max(a.count, b.count)
    let paddedA = [Int](repeating: 1, count: rank - a.count) + a
    let paddedB = [Int](repeating: 1, count: rank - b.count) + b
    var output = [Int](repeating: 1, count: rank)
    var dims: [Int] = []
    var broadcastA: [Bool] = []
    var broadcastB: [Bool] = []
    for axis in 0..<rank {
      let da = paddedA[axis], db = paddedB[axis]
      opPrecondition(
        da == db || da == 1 || db == 1,
        "\(op): shapes \(a) and \(b) cannot be broadcast together (axis \(axis - rank): \(da) vs \(db))")
      let d = da == 1 ? db : da
      output[axis] = d
      if d == 1 { continue }
      let ba = da == 1, bb = db == 1
      if let lastA = broadcastA.last, let lastB = broadcastB.last, lastA == ba, lastB == bb {
        dims[dims.count - 1] *= d
      } else {
        dims.append(d)
        broadcastA.append(ba)
        broadcastB.append(bb)
      }
    }
    if dims.isEmpty {
      dims = [1]
      broadcastA = [false]
      broadcastB = [false]
    }
    func strides(_ broadcast: [Bool]) -> [Int] {
      var result = [Int](repeating: 0, count: dims.count)
      var running = 1
      for axis in stride(from: dims.count - 1, through: 0, by: -1) where !broadcast[axis] {
        result[axis] = running
        running *= dims[axis]
      }
      return result
    }
    self.outputShape = output
    self.count = output.reduce(1, *)
    self.dims = dims
    self.stridesA = strides(broadcastA)
    self.stridesB = strides(broadcastB)
  }

  /// Whether input A is read with unit stride in the innermost loop (otherwise it is a repeated scalar).
  var innerStepA: Int { stridesA[dims.count - 1] }
  var innerStepB: Int { stridesB[dims.count - 1] }

  /// Walks the output positions in `range` as runs along the innermost loop:
  /// `body(offsetA, offsetB, outputOffset, length)`. Offsets point at the run's first element.
  @inline(__always)
  func forEachRun(in range: Range<Int>, _ body: (Int, Int, Int, Int) -> Void) {
    let outerRank = dims.count - 1
    let inner = dims[outerRank]
    let stepA = stridesA[outerRank], stepB = stridesB[outerRank]
    var j = range.lowerBound % inner
    var outer = range.lowerBound / inner
    withUnsafeTemporaryAllocation(of: Int.self, capacity: Swift.max(outerRank, 1)) { index in
      var offsetA = 0, offsetB = 0
      for axis in stride(from: outerRank - 1, through: 0, by: -1) {
        let i = outer % dims[axis]
        outer /= dims[axis]
        index[axis] = i
        offsetA += i * stridesA[axis]
        offsetB += i * stridesB[axis]
      }
      var position = range.lowerBound
      while position < range.upperBound {
        let n = Swift.min(inner - j, range.upperBound - position)
        body(offsetA + j * stepA, offsetB + j * stepB, position, n)
        position += n
        j = 0
        var axis = outerRank - 1
        while axis >= 0 {
          index[axis] += 1
          offsetA += stridesA[axis]
          offsetB += stridesB[axis]
          if index[axis] < dims[axis] { break }
          offsetA -= stridesA[axis] * dims[axis]
          offsetB -= stridesB[axis] * dims[axis]
          index[axis] = 0
          axis -= 1
        }
      }
    }
  }
}

/// An elementwise binary operation, in vector and scalar form.
protocol BinaryElementwiseOperation {
  static func apply(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float>
  static func apply(_ a: Float, _ b: Float) -> Float
}

enum AddOperation: BinaryElementwiseOperation {
  @inline(__always) static func apply(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a + b }
  @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a + b }
}

enum SubtractOperation: BinaryElementwiseOperation {
  @inline(__always) static func apply(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a - b }
  @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a - b }
}

enum MultiplyOperation: BinaryElementwiseOperation {
  @inline(__always) static func apply(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a * b }
  @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a * b }
}

/// Picks `b` (used to broadcast-copy one tensor into a larger shape).
enum SecondOperation: BinaryElementwiseOperation {
  @inline(__always) static func apply(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { b }
  @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { b }
}

extension ElementwiseKernels {
  /// `out[i] = Op(a[i·stepA], b[i·stepB])` for `i < n`, where each step is 0 (repeated scalar) or 1.
  @inline(__always)
  static func binaryRun<Op: BinaryElementwiseOperation>(
    _: Op.Type, _ a: UnsafePointer<Float>, _ stepA: Int, _ b: UnsafePointer<Float>, _ stepB: Int,
    _ out: UnsafeMutablePointer<Float>, _ n: Int
  ) {
    var i = 0
    switch (stepA, stepB) {
    case (1, 1):
      while i + 16 <= n {
        store(Op.apply(load(a + i), load(b + i)), out + i)
        store(Op.apply(load(a + i + 8), load(b + i + 8)), out + i + 8)
        i += 16
      }
      if i + 8 <= n {
        store(Op.apply(load(a + i), load(b + i)), out + i)
        i += 8
      }
      while i < n {
        out[i] = Op.apply(a[i], b[i])
        i += 1
      }
    case (1, 0):
      let s = b[0]
      let v = SIMD8<Float>(repeating: s)
      while i + 8 <= n {
        store(Op.apply(load(a + i), v), out + i)
        i += 8
      }
      while i < n {
        out[i] = Op.apply(a[i], s)
        i += 1
      }
    case (0, 1):
      let s = a[0]
      let v = SIMD8<Float>(repeating: s)
      while i + 8 <= n {
        store(Op.apply(v, load(b + i)), out + i)
        i += 8
      }
      while i < n {
        out[i] = Op.apply(s, b[i])
        i += 1
      }
    default:
      out.update(repeating: Op.apply(a[0], b[0]), count: n)
    }
  }

  /// Applies `Op` to broadcast operands, writing `plan.count` elements to `out`.
  /// `out` may alias `a` when `a` has the output shape (in-place update).
  static func binary<Op: BinaryElementwiseOperation>(
    _ op: Op.Type, plan: BroadcastPlan,
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>
  ) {
    let stepA = plan.innerStepA, stepB = plan.innerStepB
    Parallel.forRanges(plan.count, minimumChunk: parallelGrain) { range in
      plan.forEachRun(in: range) { offsetA, offsetB, offsetOut, n in
        binaryRun(op, a + offsetA, stepA, b + offsetB, stepB, out + offsetOut, n)
      }
    }
  }
}

// MARK: - Sum reduction

extension ElementwiseKernels {
  /// Sums `input` (row-major `shape`) over the axes where `keep` is false, writing the kept
  /// axes in order to `output` (which need not be initialized).
  ///
  /// Axes of size 1 are dropped and neighbouring axes of the same kind merged, so e.g. a bias
  /// gradient `[N,H,W,C] → [C]` is one reduced loop over `NHW` rows of one kept `C`-vector.
  /// When the outermost loop is kept, threads own disjoint outputs; when it is reduced, each
  /// thread sums its slice into a partial buffer and the partials are added at the end.
  static func reduceSum(
    _ input: UnsafePointer<Float>, shape: [Int], keep: [Bool], into output: UnsafeMutablePointer<Float>
  ) {
    assert(shape.count == keep.count)
    var dims: [Int] = []
    var kept: [Bool] = []
    for (d, k) in zip(shape, keep) where d != 1 {
      if let last = kept.last, last == k {
        dims[dims.count - 1] *= d
      } else {
        dims.append(d)
        kept.append(k)
      }
    }
    let total = shape.reduce(1, *)
    let outCount = zip(shape, keep).filter(\.1).map(\.0).reduce(1, *)
    if total == 0 {
      output.update(repeating: 0, count: outCount)
      return
    }
    if kept.allSatisfy({ $0 }) {
      output.update(from: input, count: total)
      return
    }
    if dims.count == 1 {
      output[0] = Float(sumAll(input, count: total))
      return
    }
    let rank = dims.count
    var inStrides = [Int](repeating: 1, count: rank)
    var outStrides = [Int](repeating: 0, count: rank)
    var runningIn = 1, runningOut = 1
    for axis in stride(from: rank - 1, through: 0, by: -1) {
      inStrides[axis] = runningIn
      runningIn *= dims[axis]
      if kept[axis] {
        outStrides[axis] = runningOut
        runningOut *= dims[axis]
      }
    }
    let innerKept = kept[rank - 1]
    let inner = dims[rank - 1]

    // Adds the block below loop level 1 (all loops but the outermost) into `out`.
    func accumulateBlock(_ input: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>) {
      let outerRank = rank - 1
      withUnsafeTemporaryAllocation(of: Int.self, capacity: rank) { index in
        for axis in 1..<outerRank { index[axis] = 0 }
        var inOffset = 0, outOffset = 0
        while true {
          if innerKept {
            accumulate(input + inOffset, into: out + outOffset, count: inner)
          } else {
            out[outOffset] += Float(sum(input + inOffset, count: inner))
          }
          var axis = outerRank - 1
          while axis >= 1 {
            index[axis] += 1
            inOffset += inStrides[axis]
            outOffset += outStrides[axis]
            if index[axis] < dims[axis] { break }
            inOffset -= inStrides[axis] * dims[axis]
            outOffset -= outStrides[axis] * dims[axis]
            index[axis] = 0
            axis -= 1
          }
          if axis < 1 { return }
        }
      }
    }

    let blockElements = inStrides[0]
    let minimumChunk = Swift.max(1, parallelGrain / blockElements)
    if kept[0] {
      let blockOutputs = outStrides[0]
      Parallel.forRanges(dims[0], minimumChunk: minimumChunk) { range in
        for i in range {
          let out = output + i * blockOutputs
          out.update(repeating: 0, count: blockOutputs)
          accumulateBlock(input + i * blockElements, out)
        }
      }
      return
    }
    let chunks = reductionChunkCount(dims[0], minimumChunk: minimumChunk, partialSize: outCount)
    if chunks == 1 {
      output.update(repeating: 0, count: outCount)
      for i in 0..<dims[0] { accumulateBlock(input + i * blockElements, output) }
      return
    }
    KernelScratch.with(count: chunks * outCount, zeroed: true) { partial in
      forChunks(dims[0], chunks: chunks) { chunk, range in
        for i in range { accumulateBlock(input + i * blockElements, partial + chunk * outCount) }
      }
      output.update(from: partial, count: outCount)
      for chunk in 1..<chunks { accumulate(partial + chunk * outCount, into: output, count: outCount) }
    }
  }
}
