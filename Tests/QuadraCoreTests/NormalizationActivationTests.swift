import Foundation
import Testing

@testable import QuadraCore

@Suite struct NormalizationActivationTests {
  @Test func layerNormOfAKnownRow() {
    // x = [1, 2, 3, 4]: μ = 2.5, σ² = 1.25, so x̂ = (x − 2.5)/√1.25.
    let x = Tensor(shape: [1, 4], scalars: [1, 2, 3, 4])
    let (y, statistics) = x.layerNorm(weight: Tensor(ones: [4]), bias: Tensor(zeros: [4]), epsilon: 0)
    let expected: [Float] = [-1.3416408, -0.4472136, 0.4472136, 1.3416408]
    for (a, b) in zip(y.scalars, expected) { #expect(abs(a - b) < 1e-6) }
    #expect(statistics.mean.scalars == [2.5])
    #expect(abs(statistics.inverseStandardDeviation.scalar - 1 / Float(1.25).squareRoot()) < 1e-6)
    // With γ = 2, β = 1 every element becomes 2·x̂ + 1.
    let (scaled, _) = x.layerNorm(weight: Tensor(shape: [4], repeating: 2), bias: Tensor(ones: [4]), epsilon: 0)
    for (a, b) in zip(scaled.scalars, expected) { #expect(abs(a - (2 * b + 1)) < 1e-6) }
  }

  @Test(arguments: [1, 5, 8, 33, 96])
  func layerNormMatchesDoubleReference(_ c: Int) {
    // A large common offset checks the shifted statistics against cancellation.
    let x = randomTensor([3, 7, c], seed: UInt64(c)) + 100
    let weight = randomTensor([c], seed: 1), bias = randomTensor([c], seed: 2)
    let (y, statistics) = x.layerNorm(weight: weight, bias: bias)
    #expect(statistics.mean.shape == [21])
    let xs = x.scalars, ys = y.scalars
    var worst: Float = 0
    for row in 0..<21 {
      let expected = referenceLayerNorm(
        Array(xs[(row * c)..<((row + 1) * c)]), weight: weight.scalars, bias: bias.scalars, epsilon: 1e-6)
      for j in 0..<c { worst = max(worst, abs(ys[row * c + j] - expected[j])) }
    }
    // x̂ is computed from Float (x − μ), which carries ~1e-5 absolute error at |x| ≈ 100.
    #expect(worst < 2e-3 * Float(c > 1 ? 1 : 0) + 1e-4)
  }

  /// The four-row statistics (interleaved chains) give the one-row version's bits, whatever the width (vector
  /// part, scalar tail or both) and the rows' scales and offsets; so do whole LayerNorms over row counts that
  /// leave 0–3 rows after the groups of four, row by row against the one-row statistics.
  @Test(arguments: [1, 7, 8, 13, 40, 80, 161])
  func fourRowStatisticsGiveTheOneRowBits(columns c: Int) {
    var generator = RandomGenerator(seed: UInt64(c))
    let x = Tensor.uniform(shape: [4, c], lower: -3, upper: 5, using: &generator)
    let p = x.buffer.pointer
    for r in 0..<4 { for j in 0..<c { p[r * c + j] = p[r * c + j] * Float(1 << (3 * r)) + Float(100 * r) } }
    var mean = [Float](repeating: 0, count: 4), rstd = [Float](repeating: 0, count: 4)
    NormalizationKernels.statistics(UnsafePointer(p), columns: c, epsilon: 1e-5, mean: &mean, inverseStandardDeviation: &rstd)
    for r in 0..<4 {
      let one = NormalizationKernels.statistics(UnsafePointer(p + r * c), columns: c, epsilon: 1e-5)
      #expect(mean[r].bitPattern == one.mean.bitPattern && rstd[r].bitPattern == one.inverseStandardDeviation.bitPattern)
    }
    for rows in [1, 2, 3, 4, 5, 6, 7, 9] {
      let input = Tensor.uniform(shape: [rows, c], lower: -2, upper: 2, using: &generator)
      let weight = Tensor.uniform(shape: [c], lower: 0.5, upper: 1.5, using: &generator)
      let bias = Tensor.uniform(shape: [c], lower: -1, upper: 1, using: &generator)
      let (y, statistics) = input.layerNorm(weight: weight, bias: bias, epsilon: 1e-5)
      for r in 0..<rows {
        let one = NormalizationKernels.statistics(input.buffer.pointer + r * c, columns: c, epsilon: 1e-5)
        #expect(statistics.mean.scalars[r].bitPattern == one.mean.bitPattern)
        #expect(statistics.inverseStandardDeviation.scalars[r].bitPattern == one.inverseStandardDeviation.bitPattern)
        for j in 0..<c {
          let expected =
            (input.scalars[r * c + j] - one.mean) * one.inverseStandardDeviation * weight.scalars[j] + bias.scalars[j]
          #expect(abs(y.scalars[r * c + j] - expected) <= 1e-5 * Swift.max(1, abs(expected)))
        }
      }
    }
  }

  @Test func layerNormBackwardMatchesReferenceFormulas() {
    let c = 19
    let x = randomTensor([2, 3, c], seed: 5), g = randomTensor([2, 3, c], seed: 6)
    let weight = randomTensor([c], seed: 7), bias = randomTensor([c], seed: 8)
    let (_, statistics) = x.layerNorm(weight: weight, bias: bias)
    let (dx, dWeight, dBias) = x.layerNormBackward(outputGradient: g, weight: weight, statistics: statistics)
    // Reference in Double, straight from the definition.
    let xs = x.scalars.map(Double.init), gs = g.scalars.map(Double.init), w = weight.scalars.map(Double.init)
    var expectedDx = [Double](repeating: 0, count: xs.count)
    var expectedDw = [Double](repeating: 0, count: c), expectedDb = [Double](repeating: 0, count: c)
    for row in 0..<6 {
      let r = Array(xs[(row * c)..<((row + 1) * c)])
      let mean = r.reduce(0, +) / Double(c)
      let inv = 1 / (r.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(c) + 1e-6).squareRoot()
      let xhat = r.map { ($0 - mean) * inv }
      let ghat = (0..<c).map { gs[row * c + $0] * w[$0] }
      let m1 = ghat.reduce(0, +) / Double(c)
      let m2 = zip(ghat, xhat).map(*).reduce(0, +) / Double(c)
      for j in 0..<c {
        expectedDx[row * c + j] = inv * (ghat[j] - m1 - xhat[j] * m2)
        expectedDw[j] += gs[row * c + j] * xhat[j]
        expectedDb[j] += gs[row * c + j]
      }
    }
    #expect(maxDifference(dx, Tensor(shape: x.shape, scalars: expectedDx.map { Float($0) })) < 1e-4)
    #expect(maxDifference(dWeight, Tensor(shape: [c], scalars: expectedDw.map { Float($0) })) < 1e-4)
    #expect(maxDifference(dBias, Tensor(shape: [c], scalars: expectedDb.map { Float($0) })) < 1e-4)
  }

  /// An input-gradient addend comes out as the same bits as the plain backward plus a separate sum
  /// (γ's and β's gradients untouched), over enough rows for several chunks; the reference backend agrees.
  @Test func layerNormBackwardAddsTheAddendAsItWritesRows() {
    let c = 21
    let x = randomTensor([64, 9, c], seed: 11), g = randomTensor([64, 9, c], seed: 12)
    let addend = randomTensor([64, 9, c], seed: 13)
    let weight = randomTensor([c], seed: 14), bias = randomTensor([c], seed: 15)
    let (_, statistics) = x.layerNorm(weight: weight, bias: bias)
    let plain = x.layerNormBackward(outputGradient: g, weight: weight, statistics: statistics)
    let folded = x.layerNormBackward(
      outputGradient: g, weight: weight, statistics: statistics, inputGradientAddend: addend)
    #expect(folded.input.scalars == plain.input.adding(addend).scalars)
    #expect(folded.weight.scalars == plain.weight.scalars)
    #expect(folded.bias.scalars == plain.bias.scalars)
    let reference = Backends.withCurrent(ReferenceBackend()) {
      x.layerNormBackward(outputGradient: g, weight: weight, statistics: statistics, inputGradientAddend: addend)
    }
    #expect(maxDifference(folded.input, reference.input) < 1e-4)
  }

  @Test func geluKnownValues() {
    let x = Tensor(shape: [5], scalars: [1, -1, 0, 2, -3])
    let expected: [Float] = [0.8413447, -0.1586553, 0, 1.9544997, -0.0040497]
    for (a, b) in zip(x.gelu().scalars, expected) { #expect(abs(a - b) < 1e-6) }
  }

  @Test func geluAndDerivativeMatchErfReferenceOverARange() {
    // Dense grid over [-10, 10] (an odd count, so the vector tail path runs too).
    let n = 20_001
    let x = Tensor(shape: [n], scalars: (0..<n).map { Float(-10 + 20 * Double($0) / Double(n - 1)) })
    let y = x.gelu(), d = x.geluBackward(outputGradient: Tensor(ones: [n]))
    var worstValue = 0.0, worstDerivative = 0.0
    for (i, v) in x.scalars.enumerated() {
      let xd = Double(v)
      // Errors relative to max(1, |x|): the erf approximation's absolute error is scaled by x/2.
      worstValue = max(worstValue, abs(Double(y.scalars[i]) - referenceGELU(xd)) / max(1, abs(xd)))
      worstDerivative = max(worstDerivative, abs(Double(d.scalars[i]) - referenceGELUDerivative(xd)))
    }
    #expect(worstValue < 1e-6)
    #expect(worstDerivative < 2e-6)
  }

  @Test func bothErfApproximationsAreAccurate() {
    var worstRational = 0.0, worstExponential = 0.0, worstGaussian = 0.0
    for i in 0..<3000 {
      let base = -6 + Float(i) * 0.004
      let z = SIMD8<Float>((0..<8).map { base + Float($0) * 0.0005 })
      let rational = ActivationKernels.erf(z)
      let (exponential, gaussian) = ActivationKernels.erfAndGaussian(z)
      for lane in 0..<8 {
        let reference = Foundation.erf(Double(z[lane]))
        worstRational = max(worstRational, abs(Double(rational[lane]) - reference))
        worstExponential = max(worstExponential, abs(Double(exponential[lane]) - reference))
        worstGaussian = max(worstGaussian, abs(Double(gaussian[lane]) - Foundation.exp(-Double(z[lane] * z[lane]))))
      }
    }
    #expect(worstRational < 1e-6)
    #expect(worstExponential < 1e-6)
    #expect(worstGaussian < 1e-6)
  }

  @Test func vectorExpIsAccurate() {
    var worst: Float = 0
    for i in 0..<2000 {
      let base = -87 + Float(i) * 0.0875
      let v = SIMD8<Float>((0..<8).map { base + Float($0) * 0.01 })
      let e = ActivationKernels.exp(v)
      for lane in 0..<8 {
        let reference = Foundation.exp(Double(v[lane]))
        worst = max(worst, Float(abs(Double(e[lane]) - reference) / reference))
      }
    }
    #expect(worst < 5e-7)
  }

  @Test func biasGELUMatchesSeparateOps() {
    for c in [5, 8, 37] {
      let x = randomTensor([3, 4, c], seed: UInt64(c)), b = randomTensor([c], seed: 99)
      #expect(maxDifference(x.biasGELU(bias: b), (x + b).gelu()) == 0)
      let g = randomTensor([3, 4, c], seed: 3)
      let (dx, dBias) = x.biasGELUBackward(bias: b, outputGradient: g)
      let expectedDx = (x + b).geluBackward(outputGradient: g)
      #expect(maxDifference(dx, expectedDx) == 0)
      #expect(maxDifference(dBias, referenceSum(expectedDx, toShape: [c])) < 1e-5)
    }
  }

  /// The CPU backend's one-pass GELU backward (the unfused residual MLP's) against the default, GELU then
  /// GELU′ in place, on the reference backend: several chunks of rows (each with its partial bias sums), a
  /// width that is not a whole number of vectors, and on one and two threads.
  @Test func geluBackwardWithActivationMatchesTheDefault() {
    let (rows, c) = (1500, 37)
    let x = randomTensor([rows, c], seed: 21, scale: 3), g = randomTensor([rows, c], seed: 22)
    let reference = ReferenceBackend()
    let expectedGradient = g.copy(), expectedActivated = Tensor(zeros: [rows, c]), expectedBias = Tensor(zeros: [c])
    reference.geluBackwardWithActivation(
      x, gradient: expectedGradient, activated: expectedActivated, biasGradient: expectedBias)
    for threads in [1, 2] {
      let gradient = g.copy(), activated = Tensor(zeros: [rows, c]), bias = Tensor(zeros: [c])
      Parallel.withThreadCount(threads) {
        CPUBackend().geluBackwardWithActivation(x, gradient: gradient, activated: activated, biasGradient: bias)
      }
      #expect(maxDifference(gradient, expectedGradient) < 1e-5)
      #expect(maxDifference(activated, expectedActivated) < 1e-5)
      #expect(maxDifference(bias, expectedBias) < 1e-3)
      #expect(maxDifference(gradient, g) > 0.1)
    }
  }

  @Test func softmaxRowsSumToOneAndMatchReference() {
    let x = randomTensor([6, 13], seed: 4, scale: 5) + 50
    let y = x.softmax()
    let xs = x.scalars
    for row in 0..<6 {
      let r = xs[(row * 13)..<((row + 1) * 13)].map(Double.init)
      let m = r.max()!
      let total = r.map { Foundation.exp($0 - m) }.reduce(0, +)
      for j in 0..<13 {
        #expect(abs(Double(y[row, j]) - Foundation.exp(r[j] - m) / total) < 1e-6)
      }
    }
  }

  @Test func crossEntropyWithoutSmoothing() {
    // Row 0: logits [1, 2, 3], label 2: −log(e³/(e + e² + e³)) = 0.40760596.
    // Row 1: logits [0, 0, 0], label 0: log 3 = 1.0986123.
    let logits = Tensor(shape: [2, 3], scalars: [1, 2, 3, 0, 0, 0])
    let (loss, probabilities) = logits.softmaxCrossEntropy(labels: [2, 0])
    #expect(abs(loss - (0.40760596 + 1.0986123) / 2) < 1e-6)
    #expect(abs(probabilities[1, 1] - 1.0 / 3) < 1e-6)
    let gradient = Tensor.softmaxCrossEntropyBackward(
      probabilities: probabilities, labels: [2, 0], labelSmoothing: 0, scale: 0.5)
    // (softmax − onehot)/B
    #expect(abs(gradient[0, 2] - (0.66524096 - 1) / 2) < 1e-6)
    #expect(abs(gradient[1, 1] - (1.0 / 3) / 2) < 1e-6)
  }

  @Test func crossEntropyWithSmoothing() {
    // ε = 0.1, K = 3: q = [0.0333, 0.0333, 0.9333] for label 2.
    // L = logsumexp − Σ q·z = 3.40760596 − (0.1/3·6 + 0.9·3) = 0.50760596.
    let logits = Tensor(shape: [1, 3], scalars: [1, 2, 3])
    let (loss, probabilities) = logits.softmaxCrossEntropy(labels: [2], labelSmoothing: 0.1)
    #expect(abs(loss - 0.50760596) < 1e-6)
    let gradient = Tensor.softmaxCrossEntropyBackward(
      probabilities: probabilities, labels: [2], labelSmoothing: 0.1, scale: 1)
    #expect(abs(gradient[0, 0] - (0.09003057 - 0.1 / 3)) < 1e-6)
    #expect(abs(gradient[0, 2] - (0.66524096 - (0.9 + 0.1 / 3))) < 1e-6)
    // The gradient of each row sums to zero.
    #expect(abs(gradient.scalars.reduce(0, +)) < 1e-6)
  }

  @Test func argmaxPicksTheFirstLargest() {
    let t = Tensor(shape: [3, 4], scalars: [0, 5, 5, 1, -1, -2, -3, -0.5, 2, 2, 2, 2])
    #expect(t.argmaxAlongLastAxis() == [1, 3, 0])
  }

  @Test func outOfRangeLabelTrapsWithAMessage() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      _ = Tensor(zeros: [2, 3]).softmaxCrossEntropy(labels: [0, 3])
    }
    let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(message.contains("label 3 at index 1 is out of range 0..<3"))
    await #expect(processExitsWith: .failure) {
      _ = Tensor(zeros: [2, 3]).softmaxCrossEntropy(labels: [-1, 0])
    }
  }
}
