/// Per-element parameter-update loops of the optimizers, the exponential moving average and
/// gradient clipping. Each loop reads and writes every element once, in parallel chunks.
///
/// The arithmetic of each element is written out in a fixed order (no fused multiply-add):
/// the AdamW loop reproduces the original implementation bit for bit, which resumed runs and
/// the tests rely on.
enum OptimizerKernels {
  /// Elements below which an update stays on one thread.
  static let parallelGrain = 1 << 15

  /// AdamW: `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`, `θ ← θ·scale − stepSize·m / (√v·c₂ + ε)`.
  static func adamW(
    parameter theta: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>,
    firstMoment m: UnsafeMutablePointer<Float>, secondMoment v: UnsafeMutablePointer<Float>, count: Int,
    beta1: Float, beta2: Float, epsilon: Float, stepSize: Float, inverseRootSecondCorrection: Float,
    parameterScale: Float
  ) {
    let step = AdamWStep(
      beta1: beta1, beta2: beta2, epsilon: epsilon, stepSize: stepSize,
      inverseRootSecondCorrection: inverseRootSecondCorrection, parameterScale: parameterScale)
    Parallel.forRanges(count, minimumChunk: parallelGrain) { range in
      adamW(step, parameter: theta, gradient: g, firstMoment: m, secondMoment: v, elements: range)
    }
  }

  /// One parameter tensor's pointers in a multi-tensor AdamW step.
  struct AdamWOperand {
    let step: AdamWStep
    let parameter: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>
    let firstMoment: UnsafeMutablePointer<Float>, secondMoment: UnsafeMutablePointer<Float>
    let count: Int
  }

  /// AdamW on several tensors as if they were one: the elements of all of them, in order, are split into
  /// contiguous ranges across the threads (a range may end inside a tensor). A small model's tensors are
  /// each below the parallel threshold, so one call per tensor keeps the whole step on one thread.
  /// Every element gets the same bits as in ``adamW(parameter:gradient:firstMoment:secondMoment:count:beta1:beta2:epsilon:stepSize:inverseRootSecondCorrection:parameterScale:)``.
  static func adamW(_ operands: [AdamWOperand]) {
    var starts = [Int](), total = 0
    starts.reserveCapacity(operands.count)
    for operand in operands {
      starts.append(total)
      total += operand.count
    }
    Parallel.forRanges(total, minimumChunk: parallelGrain) { range in
      // The last tensor starting at or before the range's start, then each tensor the range reaches.
      var index = starts.lastIndex { $0 <= range.lowerBound } ?? 0
      while index < operands.count && starts[index] < range.upperBound {
        let o = operands[index], start = starts[index]
        let elements = Swift.max(range.lowerBound, start) - start..<Swift.min(range.upperBound, start + o.count) - start
        if !elements.isEmpty {
          adamW(
            o.step, parameter: o.parameter, gradient: o.gradient, firstMoment: o.firstMoment,
            secondMoment: o.secondMoment, elements: elements)
        }
        index += 1
      }
    }
  }

  /// The AdamW update of elements `elements` of one tensor.
  @inline(__always)
  static func adamW(
    _ s: AdamWStep, parameter theta: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>,
    firstMoment m: UnsafeMutablePointer<Float>, secondMoment v: UnsafeMutablePointer<Float>, elements: Range<Int>
  ) {
    let (beta1, beta2, epsilon) = (s.beta1, s.beta2, s.epsilon)
    let (stepSize, inverseRootSecondCorrection, parameterScale) = (s.stepSize, s.inverseRootSecondCorrection, s.parameterScale)
    // Eight lanes at a time with the scalar loop's operations in the scalar loop's order (square root
    // and division are correctly rounded in both, and Swift contracts nothing into a fused
    // multiply-add), so every element gets the same bits as the scalar tail would give it — and the
    // same wherever a range of elements starts: the compiler leaves the scalar loop unvectorized (its
    // `sqrtf` keeps an errno path), 4× slower.
    typealias V = SIMD8<Float>
    let b1 = V(repeating: beta1), c1 = V(repeating: 1 - beta1), b2 = V(repeating: beta2), c2 = V(repeating: 1 - beta2)
    let rootCorrection = V(repeating: inverseRootSecondCorrection), eps = V(repeating: epsilon)
    let step = V(repeating: stepSize), scale = V(repeating: parameterScale)
    var i = elements.lowerBound
    while i + 8 <= elements.upperBound {
      let gi = ElementwiseKernels.load(g + i)
      let mi = b1 * ElementwiseKernels.load(m + i) + c1 * gi
      let vi = b2 * ElementwiseKernels.load(v + i) + c2 * gi * gi
      ElementwiseKernels.store(mi, m + i)
      ElementwiseKernels.store(vi, v + i)
      let denominator = vi.squareRoot() * rootCorrection + eps
      ElementwiseKernels.store(ElementwiseKernels.load(theta + i) * scale - step * mi / denominator, theta + i)
      i += 8
    }
    while i < elements.upperBound {
      let gi = g[i]
      let mi = beta1 * m[i] + (1 - beta1) * gi
      let vi = beta2 * v[i] + (1 - beta2) * gi * gi
      m[i] = mi
      v[i] = vi
      let denominator = vi.squareRoot() * inverseRootSecondCorrection + epsilon
      theta[i] = theta[i] * parameterScale - stepSize * mi / denominator
      i += 1
    }
  }

  /// SGD as `torch.optim.SGD` with dampening 0: `d = g + λθ`; with a momentum buffer
  /// `b ← μb + d` and `d = b` (or `d + μb` for Nesterov); then `θ ← θ − lr·d`.
  static func sgd(
    parameter theta: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>,
    momentumBuffer buffer: UnsafeMutablePointer<Float>?, count: Int, learningRate: Float, momentum: Float,
    weightDecay: Float, nesterov: Bool
  ) {
    Parallel.forRanges(count, minimumChunk: parallelGrain) { range in
      guard let buffer else {
        for i in range { theta[i] = theta[i] - learningRate * (g[i] + weightDecay * theta[i]) }
        return
      }
      for i in range {
        let direction = g[i] + weightDecay * theta[i]
        let b = momentum * buffer[i] + direction
        buffer[i] = b
        theta[i] = theta[i] - learningRate * (nesterov ? direction + momentum * b : b)
      }
    }
  }

  /// `x ← α·x + β·y`.
  static func linearCombination(
    _ x: UnsafeMutablePointer<Float>, scaledBy alpha: Float, adding y: UnsafePointer<Float>, scaledBy beta: Float,
    count: Int
  ) {
    Parallel.forRanges(count, minimumChunk: parallelGrain) { range in
      for i in range { x[i] = alpha * x[i] + beta * y[i] }
    }
  }

  /// `Σ xᵢ²` with eight-lane Float partials folded into Double every 1024 elements, per chunk;
  /// the chunks' totals are added in chunk order; the chunks depend only on `n`, so the result
  /// is the same on any thread count.
  static func sumOfSquares(_ x: UnsafePointer<Float>, count n: Int) -> Double {
    let chunks = ElementwiseKernels.reductionChunkCount(n, minimumChunk: parallelGrain * 4)
    let partials = UnsafeMutablePointer<Double>.allocate(capacity: chunks)
    defer { partials.deallocate() }
    partials.initialize(repeating: 0, count: chunks)
    ElementwiseKernels.forChunks(n, chunks: chunks) { chunk, range in
      var total = 0.0
      var i = range.lowerBound
      while i < range.upperBound {
        let end = Swift.min(range.upperBound, i + 1024)
        var s0 = SIMD8<Float>(), s1 = SIMD8<Float>()
        while i + 16 <= end {
          let a = ElementwiseKernels.load(x + i), b = ElementwiseKernels.load(x + i + 8)
          s0 += a * a
          s1 += b * b
          i += 16
        }
        var tail: Float = 0
        while i < end {
          tail += x[i] * x[i]
          i += 1
        }
        total += Double((s0 + s1).sum()) + Double(tail)
      }
      partials[chunk] = total
    }
    var total = 0.0
    for chunk in 0..<chunks { total += partials[chunk] }
    return total
  }
}
