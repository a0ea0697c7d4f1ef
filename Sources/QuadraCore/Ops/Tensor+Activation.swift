// GELU (exact erf form, PyTorch's default), the fused bias + GELU of MLP blocks, and softmax.

extension Tensor {
  /// GELU(x) = x·Φ(x) = ½·x·(1 + erf(x/√2)), elementwise (absolute error < 10⁻⁶ relative to |x|).
  public func gelu() -> Tensor {
    let result = Tensor(uninitializedShape: shape)
    let x = buffer.pointer, y = result.buffer.pointer
    Parallel.forRanges(count, minimumChunk: ElementwiseKernels.parallelGrain / 4) { range in
      ActivationKernels.map(x + range.lowerBound, y + range.lowerBound, count: range.count, ActivationKernels.gelu)
    }
    return result
  }

  /// ∂L/∂x of ``gelu()`` given ∂L/∂y: `g · (Φ(x) + x·φ(x))`; `self` is the forward input x.
  public func geluBackward(outputGradient: Tensor) -> Tensor {
    opPrecondition(
      outputGradient.shape == shape, "geluBackward: gradient \(outputGradient.shape) differs from input \(shape)")
    let result = Tensor(uninitializedShape: shape)
    let x = buffer.pointer, g = outputGradient.buffer.pointer, dx = result.buffer.pointer
    Parallel.forRanges(count, minimumChunk: ElementwiseKernels.parallelGrain / 4) { range in
      var i = range.lowerBound
      while i + 8 <= range.upperBound {
        ElementwiseKernels.store(
          ElementwiseKernels.load(g + i) * ActivationKernels.geluDerivative(ElementwiseKernels.load(x + i)), dx + i)
        i += 8
      }
      let n = range.upperBound - i
      if n > 0 {
        let d = ActivationKernels.geluDerivative(ActivationKernels.loadPartial(x + i, count: n))
        ActivationKernels.storePartial(ActivationKernels.loadPartial(g + i, count: n) * d, dx + i, count: n)
      }
    }
    return result
  }

  private func biasChecks(_ bias: Tensor, op: String) -> (rows: Int, columns: Int) {
    opPrecondition(rank >= 1 && shape[rank - 1] > 0, "\(op): input shape \(shape) needs a non-empty last axis")
    let c = shape[rank - 1]
    opPrecondition(bias.shape == [c], "\(op): bias shape \(bias.shape) must be [\(c)] for input \(shape)")
    return (count / c, c)
  }

  /// GELU(x + b) with `b` of shape `[C]` added along the last axis, in one pass
  /// (the MLP's first linear layer leaves its bias to this kernel).
  public func biasGELU(bias: Tensor) -> Tensor {
    let (rows, c) = biasChecks(bias, op: "biasGELU")
    let result = Tensor(uninitializedShape: shape)
    let x = buffer.pointer, b = bias.buffer.pointer, y = result.buffer.pointer
    Parallel.forRanges(rows, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / 4 / c)) { range in
      for row in range {
        let xr = x + row * c, yr = y + row * c
        var j = 0
        while j + 8 <= c {
          let v = ElementwiseKernels.load(xr + j) + ElementwiseKernels.load(b + j)
          ElementwiseKernels.store(ActivationKernels.gelu(v), yr + j)
          j += 8
        }
        if j < c {
          let v = ActivationKernels.loadPartial(xr + j, count: c - j) + ActivationKernels.loadPartial(b + j, count: c - j)
          ActivationKernels.storePartial(ActivationKernels.gelu(v), yr + j, count: c - j)
        }
      }
    }
    return result
  }

  /// Gradients of ``biasGELU(bias:)`` given ∂L/∂y; `self` is the forward input (before the bias).
  ///
  /// - Returns: ∂L/∂x = g·GELU′(x + b), and ∂L/∂b, its sum over all rows (per-thread partials).
  public func biasGELUBackward(bias: Tensor, outputGradient: Tensor) -> (input: Tensor, bias: Tensor) {
    let (rows, c) = biasChecks(bias, op: "biasGELUBackward")
    opPrecondition(
      outputGradient.shape == shape,
      "biasGELUBackward: gradient \(outputGradient.shape) differs from input \(shape)")
    let dx = Tensor(uninitializedShape: shape)
    let x = buffer.pointer, b = bias.buffer.pointer, g = outputGradient.buffer.pointer, d = dx.buffer.pointer
    let chunks = ElementwiseKernels.chunkCount(rows, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / 4 / c))
    let partials = Tensor(zeros: [chunks, c])
    let partial = partials.buffer.pointer
    ElementwiseKernels.forChunks(rows, chunks: chunks) { chunk, range in
      let pb = partial + chunk * c
      for row in range {
        let xr = x + row * c, gr = g + row * c, dr = d + row * c
        var j = 0
        while j + 8 <= c {
          let v = ElementwiseKernels.load(xr + j) + ElementwiseKernels.load(b + j)
          let dv = ElementwiseKernels.load(gr + j) * ActivationKernels.geluDerivative(v)
          ElementwiseKernels.store(dv, dr + j)
          ElementwiseKernels.store(ElementwiseKernels.load(pb + j) + dv, pb + j)
          j += 8
        }
        if j < c {
          let n = c - j
          let v = ActivationKernels.loadPartial(xr + j, count: n) + ActivationKernels.loadPartial(b + j, count: n)
          let dv = ActivationKernels.loadPartial(gr + j, count: n) * ActivationKernels.geluDerivative(v)
          ActivationKernels.storePartial(dv, dr + j, count: n)
          for k in 0..<n { pb[j + k] += dv[k] }
        }
      }
    }
    let dBias = Tensor(uninitializedShape: [c])
    dBias.buffer.pointer.update(from: partial, count: c)
    for chunk in 1..<chunks { ElementwiseKernels.accumulate(partial + chunk * c, into: dBias.buffer.pointer, count: c) }
    return (dx, dBias)
  }

  /// Softmax over the last axis: `softmax(x)ᵢ = e^(xᵢ − m) / Σⱼ e^(xⱼ − m)` with m the row maximum
  /// (subtracting it keeps e^x finite).
  public func softmax() -> Tensor {
    opPrecondition(rank >= 1 && shape[rank - 1] > 0, "softmax: input shape \(shape) needs a non-empty last axis")
    let c = shape[rank - 1]
    let result = Tensor(uninitializedShape: shape)
    let x = buffer.pointer, y = result.buffer.pointer
    Parallel.forRanges(count / c, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / 4 / c)) { range in
      for row in range { _ = SoftmaxRow.compute(x + row * c, y + row * c, count: c) }
    }
    return result
  }
}

/// One softmax row, shared by ``Tensor/softmax()`` and the cross-entropy loss.
enum SoftmaxRow {
  /// Writes softmax(x) to `y` and returns (max, Σ e^(x − max)), from which log-sum-exp follows.
  @inline(__always)
  static func compute(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count c: Int) -> (max: Float, sum: Float) {
    var m = -Float.infinity
    for j in 0..<c { m = Swift.max(m, x[j]) }
    let mv = SIMD8<Float>(repeating: m)
    var s = SIMD8<Float>()
    var tail: Float = 0
    var j = 0
    while j + 8 <= c {
      let e = ActivationKernels.exp(ElementwiseKernels.load(x + j) - mv)
      ElementwiseKernels.store(e, y + j)
      s += e
      j += 8
    }
    if j < c {
      let e = ActivationKernels.exp(ActivationKernels.loadPartial(x + j, count: c - j) - mv)
      ActivationKernels.storePartial(e, y + j, count: c - j)
      for k in 0..<(c - j) { tail += e[k] }
    }
    let total = s.sum() + tail
    let inverse = SIMD8<Float>(repeating: 1 / total)
    j = 0
    while j + 8 <= c {
      ElementwiseKernels.store(ElementwiseKernels.load(y + j) * inverse, y + j)
      j += 8
    }
    while j < c {
      y[j] *= inverse[0]
      j += 1
    }
    return (m, total)
  }
}
