import Testing

@testable import QuadraCore

@Suite struct ShapeOpsTests {
  static let permutations: [([Int], [Int])] = [
    ([2, 3, 5, 7], [0, 2, 3, 1]),  // NCHW → NHWC
    ([2, 5, 7, 3], [0, 3, 1, 2]),  // NHWC → NCHW
    ([2, 3, 5, 7], [3, 2, 1, 0]),
    ([2, 3, 5, 7], [1, 0, 2, 3]),
    ([2, 1, 5, 7], [2, 0, 3, 1]),
    ([37, 45], [1, 0]),
    ([4, 33, 70], [0, 2, 1]),  // several 32-wide tiles with ragged edges
    ([3, 4, 5], [2, 0, 1]),
    ([6, 5, 4, 3, 2], [4, 2, 0, 3, 1]),
  ]

  @Test(arguments: 0..<permutations.count)
  func permuteMatchesReferenceAndRoundTrips(_ index: Int) {
    let (shape, axes) = Self.permutations[index]
    let t = randomTensor(shape, seed: UInt64(index))
    let p = t.permuted(axes)
    #expect(p.shape == axes.map { shape[$0] })
    #expect(p.scalars == referencePermute(t, axes).scalars)
    var inverse = [Int](repeating: 0, count: axes.count)
    for (i, axis) in axes.enumerated() { inverse[axis] = i }
    #expect(p.permuted(inverse).scalars == t.scalars)
  }

  @Test func transposeOfAMatrix() {
    let m = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
    #expect(m.transposed().shape == [3, 2])
    #expect(m.transposed().scalars == [1, 4, 2, 5, 3, 6])
  }

  @Test func concatAndSplitAlongLastAxis() {
    let a = Tensor(shape: [2, 2, 1], scalars: [1, 2, 3, 4])
    let b = Tensor(shape: [2, 2, 2], scalars: [10, 11, 20, 21, 30, 31, 40, 41])
    let joined = Tensor.concat(alongLastAxis: [a, b])
    #expect(joined.shape == [2, 2, 3])
    #expect(joined.scalars == [1, 10, 11, 2, 20, 21, 3, 30, 31, 4, 40, 41])
    let parts = joined.split(alongLastAxis: [1, 2])
    #expect(parts[0].scalars == a.scalars && parts[0].shape == a.shape)
    #expect(parts[1].scalars == b.scalars && parts[1].shape == b.shape)
  }

  @Test func concatAndSplitAlongOtherAxesRoundTrip() {
    let t = randomTensor([3, 10, 4, 5], seed: 9)
    for axis in 0..<4 {
      let n = t.shape[axis]
      let sizes = [1, n - 1 - n / 2, n / 2].filter { $0 >= 0 }
      let parts = t.split(sizes: sizes, axis: axis)
      #expect(parts.map { $0.shape[axis] } == sizes)
      #expect(Tensor.concat(parts, axis: axis).scalars == t.scalars)
    }
    // Splitting then joining in the other order is the reference's permutation of blocks.
    let x = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
    let pieces = x.split(sizes: [1, 2], axis: 1)
    #expect(Tensor.concat([pieces[1], pieces[0]], axis: -1).scalars == [2, 3, 1, 5, 6, 4])
    #expect(Tensor.concat([x, x], axis: 0).shape == [4, 3])
  }

  @Test func globalMeanPoolAndBackward() {
    let x = randomTensor([2, 3, 5, 7], seed: 12)
    let pooled = x.globalMeanPooled()
    #expect(pooled.shape == [2, 7])
    let expected = referenceSum(x, toShape: [2, 1, 1, 7]).reshaped([2, 7]) * (1 / 15)
    #expect(maxDifference(pooled, expected) < 1e-6)
    let g = randomTensor([2, 7], seed: 13)
    let dx = Tensor.globalMeanPoolBackward(outputGradient: g, inputShape: [2, 3, 5, 7])
    #expect(dx.shape == [2, 3, 5, 7])
    #expect(abs(dx[1, 2, 4, 6] - g[1, 6] / 15) < 1e-7)
    #expect(abs(dx[0, 1, 3, 2] - g[0, 2] / 15) < 1e-7)
  }

  @Test func badShapesTrap() async {
    await #expect(processExitsWith: .failure) { _ = Tensor(zeros: [2, 3]).permuted([0, 0]) }
    await #expect(processExitsWith: .failure) { _ = Tensor(zeros: [2, 3]).split(alongLastAxis: [1, 1]) }
    await #expect(processExitsWith: .failure) {
      _ = Tensor.concat([Tensor(zeros: [2, 3]), Tensor(zeros: [3, 3])], axis: 1)
    }
  }
}
