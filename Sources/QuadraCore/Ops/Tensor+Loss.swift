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
    _ = checkClassification(labels: labels, labelSmoothing: labelSmoothing, op: "softmaxCrossEntropy")
    let probabilities = Tensor(uninitializedShape: shape, device: device)
    let loss = backend.softmaxCrossEntropy(
      self, labels: labels, labelSmoothing: labelSmoothing, probabilities: probabilities)
    return (Float(loss), probabilities)
  }

  /// ∂L/∂logits of ``softmaxCrossEntropy(labels:labelSmoothing:)``: `(softmax − q)·scale`,
  /// where `scale` is ∂(outer loss)/∂L divided by the batch size.
  public static func softmaxCrossEntropyBackward(
    probabilities: Tensor, labels: [Int], labelSmoothing: Float, scale: Float
  ) -> Tensor {
    _ = probabilities.checkClassification(
      labels: labels, labelSmoothing: labelSmoothing, op: "softmaxCrossEntropyBackward")
    let result = Tensor(uninitializedShape: probabilities.shape, device: probabilities.device)
    probabilities.backend.softmaxCrossEntropyBackward(
      probabilities: probabilities, labels: labels, labelSmoothing: labelSmoothing, scale: scale, into: result)
    return result
  }

  /// The index of the largest element of each row of the last axis (the first one on ties);
  /// for logits `[B, K]` these are the predicted classes.
  public func argmaxAlongLastAxis() -> [Int] {
    opPrecondition(rank >= 1 && shape[rank - 1] > 0, "argmaxAlongLastAxis: shape \(shape) needs a non-empty last axis")
    return backend.argmaxRows(self)
  }
}
