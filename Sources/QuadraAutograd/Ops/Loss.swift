extension Variable {
  /// Mean softmax cross-entropy of these logits `[B, K]` against integer `labels` (each in
  /// `0..<K`), with label smoothing ε: targets are `(1 − ε)·onehot + ε/K`. Returns a rank-0 loss.
  ///
  /// Backward gives `(softmax − targets)/B`, scaled by the incoming gradient.
  public func softmaxCrossEntropy(labels: [Int], labelSmoothing: Float = 0) -> Variable {
    let (loss, probabilities) = value.softmaxCrossEntropy(labels: labels, labelSmoothing: labelSmoothing)
    let batch = Float(shape[0])
    return Variable.record(Tensor(loss), inputs: [self]) { g in
      [
        Tensor.softmaxCrossEntropyBackward(
          probabilities: probabilities, labels: labels, labelSmoothing: labelSmoothing, scale: g.scalar / batch)
      ]
    }
  }
}

/// Mean softmax cross-entropy with label smoothing; see ``Variable/softmaxCrossEntropy(labels:labelSmoothing:)``.
public func softmaxCrossEntropy(logits: Variable, labels: [Int], labelSmoothing: Float = 0) -> Variable {
  logits.softmaxCrossEntropy(labels: labels, labelSmoothing: labelSmoothing)
}
