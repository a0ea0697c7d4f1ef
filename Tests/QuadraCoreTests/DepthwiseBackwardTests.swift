import Testing

@testable import QuadraCore

/// The fused depthwise backward pass (both gradients in one pass over the rows) with its row
/// ranges forced to several chunks, so every chunk boundary's halo rows are exercised on small images.
@Suite struct DepthwiseBackwardTests {
  @Test(arguments: [1, 2, 3, 5, 8])
  func chunkedFusedBackwardMatchesReference(chunks: Int) {
    var rng = RandomGenerator(seed: 500 + UInt64(chunks))
    // Kernel sizes 3, 5, 7 and 1; channel counts with a partial last block; images shorter than
    // the kernel; several images per batch so ranges cross image boundaries.
    for (n, h, w, c, k) in [(2, 9, 11, 13, 7), (3, 5, 6, 8, 5), (2, 4, 9, 20, 7), (1, 12, 3, 3, 3), (2, 6, 5, 9, 1)] {
      Self.checkChunkedFusedBackward(
        n, h, w, c, k, chunks: Swift.min(chunks, n * h), label: "N\(n) \(h)×\(w) C\(c) k\(k) chunks \(chunks)",
        using: &rng)
    }
  }

  /// Runs the fused backward pass on random data with its rows split into `chunks` ranges and
  /// compares all three gradients with the reference.
  static func checkChunkedFusedBackward(
    _ n: Int, _ h: Int, _ w: Int, _ c: Int, _ k: Int, chunks: Int, label: String, using rng: inout RandomGenerator
  ) {
    let x = Tensor.normal(shape: [n, h, w, c], using: &rng)
    let weight = Tensor.normal(shape: [k, k, c], using: &rng)
    let dy = Tensor.normal(shape: x.shape, using: &rng)
    let expected = ConvolutionReference.depthwiseBackward(x: x, w: weight, dy: dy)
    let dx = Tensor(uninitializedShape: x.shape)
    let dw = Tensor(uninitializedShape: weight.shape)
    let db = Tensor(uninitializedShape: [c])
    let shape = DepthwiseConvolution.Shape(batch: n, height: h, width: w, channels: c, kernelSize: k, op: "test")
    DepthwiseConvolution.backward(
      input: x.buffer.pointer, weight: weight.buffer.pointer, outputGradient: dy.buffer.pointer,
      inputGradient: dx.buffer.pointer, weightGradient: dw.buffer.pointer, biasGradient: db.buffer.pointer,
      shape: shape, chunks: chunks)
    expectClose(dx, expected.dx, label + " dx")
    expectClose(dw, expected.dw, label + " dW")
    expectClose(db, expected.db, label + " db")
  }

  /// The public entry point without an input gradient computes only the weight and bias gradients.
  @Test func fusedBackwardWithoutInputGradient() {
    var rng = RandomGenerator(seed: 77)
    let x = Tensor.normal(shape: [2, 8, 10, 12], using: &rng)
    let weight = Tensor.normal(shape: [5, 5, 12], using: &rng)
    let dy = Tensor.normal(shape: x.shape, using: &rng)
    let expected = ConvolutionReference.depthwiseBackward(x: x, w: weight, dy: dy)
    let dw = Tensor(uninitializedShape: weight.shape)
    Parallel.withThreadCount(2) {
      DepthwiseConvolution.backward(
        input: x.buffer.pointer, weight: weight.buffer.pointer, outputGradient: dy.buffer.pointer,
        inputGradient: nil, weightGradient: dw.buffer.pointer, biasGradient: nil,
        batch: 2, height: 8, width: 10, channels: 12, kernelSize: 5)
    }
    expectClose(dw, expected.dw, "dW only")
  }
}
