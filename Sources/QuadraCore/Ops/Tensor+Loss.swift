import Foundation

// Softmax cross-entropy with label smoothing, and the arg-max used for accuracy.

extension Tensor {
  private func checkClassification(labels: [Int], labelSmoothing: Float, op: String) -> (batch: Int, classes: Int) {
    opPrecondition(rank == 2 && shape[1] > 0, "\(op): logits must be [batch, classes], got \(shape)")
    let (b, k) = (shape[0], shape[1])
    opPrecondition(labels.count == b, "\(op): \(labels.count) labels for a batch of \(b) (logits \(shape))")
    for (i, label) in labels.enumerated() {
      opPrecondition(label >= 0 && label < k, "\(op): label \(label) at index \(i) is out of range 0..<\(k)")
    }
    opPrecondition(
      labelSmoothing >= 0 && labelSmoothing <= 1, "\(op): label smoothing \(labelSmoothing) is outside [0, 1]")
    return (b, k)
  }

  /// Mean softmax cross-entropy of `self` (logits `[B, K]`) against integer `labels`, with the
  /// targets smoothed to q = (1 − ε)·onehot(y) + ε/K:
  /// `L = (1/B) Σ_b [logΣ_k e^(z_bk) − Σ_k q_bk·z_bk]`.
  ///
  /// - Returns: the loss and the softmax probabilities `[B, K]`, which the backward pass needs.
  public func softmaxCrossEntropy(
    labels: [Int], labelSmoothing: Float = 0
  ) -> (loss: Float, probabilities: Tensor) {
    let (b, k) = checkClassification(labels: labels, labelSmoothing: labelSmoothing, op: "softmaxCrossEntropy")
    let probabilities = Tensor(uninitializedShape: shape)
    let z = buffer.pointer, p = probabilities.buffer.pointer
    let rowLosses = UnsafeMutablePointer<Double>.allocate(capacity: b)
    defer { rowLosses.deallocate() }
    let offTarget = Double(labelSmoothing) / Double(k)
    let onTarget = 1 - Double(labelSmoothing)
    labels.withUnsafeBufferPointer { labels in
      Parallel.forRanges(b, minimumChunk: Swift.max(1, ElementwiseKernels.parallelGrain / 4 / k)) { range in
        for row in range {
          let zr = z + row * k
          let (m, s) = SoftmaxRow.compute(zr, p + row * k, count: k)
          let logSumExp = Double(m) + Foundation.log(Double(s))
          var zSum = 0.0
          for j in 0..<k { zSum += Double(zr[j]) }
          rowLosses[row] = logSumExp - offTarget * zSum - onTarget * Double(zr[labels[row]])
        }
      }
    }
    var total = 0.0
    for row in 0..<b { total += rowLosses[row] }
    return (Float(total / Double(Swift.max(b, 1))), probabilities)
  }

  /// ∂L/∂logits of ``softmaxCrossEntropy(labels:labelSmoothing:)``: `(softmax − q)·scale`,
  /// where `scale` is ∂(outer loss)/∂L divided by the batch size.
  public static func softmaxCrossEntropyBackward(
    probabilities: Tensor, labels: [Int], labelSmoothing: Float, scale: Float
  ) -> Tensor {
    let (b, k) = probabilities.checkClassification(
      labels: labels, labelSmoothing: labelSmoothing, op: "softmaxCrossEntropyBackward")
    let offTarget = labelSmoothing / Float(k)
    let onTarget = 1 - labelSmoothing
    var result = probabilities.adding(-offTarget)
    result.withUnsafeMutableBufferPointer { g in
      for row in 0..<b { g[row * k + labels[row]] -= onTarget }
    }
    result *= scale
    return result
  }

  /// The index of the largest element of each row of the last axis (the first one on ties);
  /// for logits `[B, K]` these are the predicted classes.
  public func argmaxAlongLastAxis() -> [Int] {
    opPrecondition(rank >= 1 && shape[rank - 1] > 0, "argmaxAlongLastAxis: shape \(shape) needs a non-empty last axis")
    let c = shape[rank - 1]
    let rows = count / c
    let x = buffer.pointer
    return [Int](unsafeUninitializedCapacity: rows) { out, initialized in
      for row in 0..<rows {
        let xr = x + row * c
        var best = 0
        for j in 1..<c where xr[j] > xr[best] { best = j }
        out[row] = best
      }
      initialized = rows
    }
  }
}
