import Foundation
import Testing

@testable import QuadraCore

// ggml's `test-backend-ops` for this engine: every case of `BackendOpCatalog` runs forward and
// backward on every backend and is compared with the reference backend; the reference's own
// gradients are checked against central finite differences. A new backend is one more entry
// in `Backends.all`; nothing here changes.

/// The backends compared against the reference: all but the reference itself.
private let backendsUnderTest = Backends.all.filter { $0.name != ReferenceBackend().name }
private let smallCases = BackendOpCatalog.cases(.small)

private func opCase(_ name: String) -> BackendOpCase { smallCases.first { $0.name == name }! }

/// Runs `body` with `backend` as the current backend, on copies of `inputs` moved to its device;
/// returns the results moved back to the host.
private func run(
  on backend: any Backend, _ inputs: [Tensor], _ body: ([Tensor]) -> [Tensor]
) -> [Tensor] {
  Backends.withCurrent(backend) {
    body(inputs.map { $0.moved(to: backend.device) }).map { $0.moved(to: .cpu) }
  }
}

/// `max_i |value_i − reference_i| / (1 + |reference_i|)`, or infinity when the shapes differ or a value is NaN.
func maxScaledError(_ value: Tensor, _ reference: Tensor) -> Float {
  guard value.shape == reference.shape else { return .infinity }
  var worst: Float = 0
  for (v, r) in zip(value.scalars, reference.scalars) {
    let error = Swift.abs(v - r) / (1 + Swift.abs(r))
    if !(error <= worst) { worst = error.isNaN ? .infinity : error }
  }
  return worst
}

/// Seeded output gradients shaped like `outputs`.
private func outputGradients(like outputs: [Tensor]) -> [Tensor] {
  var generator = RandomGenerator(seed: 99)
  return outputs.map { Tensor.uniform(shape: $0.shape, lower: -1, upper: 1, using: &generator) }
}

@Suite struct BackendOpTests {
  @Test func catalogCoversEveryOpFamily() {
    let expected: Set = [
      "matmul", "linear", "add", "subtract", "multiply", "sum", "reduceAll", "gelu", "biasGELU", "softmax",
      "softmaxCrossEntropy", "layerNorm", "depthwiseConv2D", "conv2D", "quadraticDepthwiseConv2D", "quadraticLinear",
      "quadraticConv2D", "permute", "concat", "globalMeanPool", "gatherImages", "adamWStep", "sgdStep",
      "linearCombination", "residualMLP", "layerScaleResidual", "normalizedQuadraticDepthwiseConv2D",
    ]
    #expect(Set(BackendOpCatalog.opNames) == expected)
    #expect(Set(smallCases.map(\.name)).count == smallCases.count, "case names must be unique")
    #expect(BackendOpCatalog.cases(.large).count > 0)
    // Batches > 1 and odd sizes are what catch tail and indexing bugs.
    #expect(smallCases.contains { $0.op == "quadraticDepthwiseConv2D" && $0.makeInputs()[0].shape[0] > 1 })
    #expect(!backendsUnderTest.isEmpty)
  }

  @Test(arguments: smallCases.map(\.name))
  func forwardMatchesReference(_ name: String) {
    let opCase = opCase(name)
    let inputs = opCase.makeInputs()
    let expected = run(on: ReferenceBackend(), inputs, opCase.forward)
    for backend in backendsUnderTest {
      let actual = run(on: backend, inputs, opCase.forward)
      #expect(actual.count == expected.count)
      for (index, (value, reference)) in zip(actual, expected).enumerated() {
        let error = maxScaledError(value, reference)
        #expect(
          error <= opCase.tolerance,
          "\(name) on \(backend.name), output \(index): scaled error \(error) > \(opCase.tolerance)")
      }
    }
  }

  @Test(arguments: smallCases.filter { $0.backward != nil }.map(\.name))
  func backwardMatchesReference(_ name: String) {
    let opCase = opCase(name)
    let inputs = opCase.makeInputs()
    let gradients = outputGradients(like: run(on: ReferenceBackend(), inputs, opCase.forward))
    let backward = opCase.backward!
    let expected = run(on: ReferenceBackend(), inputs + gradients) {
      backward(Array($0.prefix(inputs.count)), Array($0.dropFirst(inputs.count)))
    }
    #expect(expected.count == opCase.differentiableInputCount)
    for backend in backendsUnderTest {
      let actual = run(on: backend, inputs + gradients) {
        backward(Array($0.prefix(inputs.count)), Array($0.dropFirst(inputs.count)))
      }
      #expect(actual.count == expected.count)
      for (index, (value, reference)) in zip(actual, expected).enumerated() {
        // Gradients sum over batches and positions, so they get a few times the forward tolerance.
        let tolerance = 4 * Swift.max(opCase.tolerance, 1e-6)
        let error = maxScaledError(value, reference)
        #expect(
          error <= tolerance,
          "\(name) on \(backend.name), gradient of input \(index): scaled error \(error) > \(tolerance)")
      }
    }
  }

  /// The reference's backward pass against `(L(x + h·eᵢ) − L(x − h·eᵢ)) / 2h` for
  /// `L = Σⱼ ⟨outputⱼ, gⱼ⟩`, at a few elements of every differentiable input.
  @Test(arguments: smallCases.filter(\.checksFiniteDifferences).map(\.name))
  func referenceBackwardMatchesFiniteDifferences(_ name: String) {
    let opCase = opCase(name)
    let reference = ReferenceBackend()
    let inputs = opCase.makeInputs()
    let gradients = outputGradients(like: run(on: reference, inputs, opCase.forward))
    let analytic = run(on: reference, inputs + gradients) {
      opCase.backward!(Array($0.prefix(inputs.count)), Array($0.dropFirst(inputs.count)))
    }
    func loss(_ inputs: [Tensor]) -> Double {
      let outputs = run(on: reference, inputs, opCase.forward)
      var total = 0.0
      for (output, gradient) in zip(outputs, gradients) {
        for (y, g) in zip(output.scalars, gradient.scalars) { total += Double(y) * Double(g) }
      }
      return total
    }
    let step: Float = 1e-2
    for input in 0..<opCase.differentiableInputCount {
      let values = inputs[input].scalars
      // Up to seven elements spread over the tensor, first and last included.
      let probes = Set((0..<7).map { $0 * (values.count - 1) / 6 })
      for element in probes.sorted() {
        func perturbed(_ delta: Float) -> [Tensor] {
          var changed = values
          changed[element] += delta
          var result = inputs
          result[input] = Tensor(shape: inputs[input].shape, scalars: changed)
          return result
        }
        let numeric = (loss(perturbed(step)) - loss(perturbed(-step))) / Double(2 * step)
        let value = Double(analytic[input].scalars[element])
        #expect(
          Swift.abs(numeric - value) <= 5e-3 * (1 + Swift.abs(numeric)),
          "\(name): ∂L/∂input\(input)[\(element)] = \(value), finite differences give \(numeric)")
      }
    }
  }

  @Test func scaledErrorFlagsDifferences() {
    let a = Tensor(shape: [3], scalars: [1, 2, 3])
    #expect(maxScaledError(a, a) == 0)
    #expect(maxScaledError(Tensor(shape: [3], scalars: [1, 2, 3.5]), a) == 0.125)
    #expect(maxScaledError(Tensor(shape: [3], scalars: [1, .nan, 3]), a) == .infinity)
    #expect(maxScaledError(Tensor(shape: [1, 3], scalars: [1, 2, 3]), a) == .infinity)
  }
}

@Suite struct BackendSelectionTests {
  @Test func currentDefaultsToTheCPUBackendAndCanBeSwitched() {
    #expect(Backends.current.name == "cpu")
    Backends.withCurrent(ReferenceBackend()) {
      #expect(Backends.current.name == "reference")
      #expect(Backends.backend(for: .cpu).name == "reference")
      // A device the current backend does not serve gets that device's default backend.
      let other = Device(kind: .cpu, index: 1)
      #expect(Backends.backend(for: other).name == "cpu")
      #expect(Backends.backend(for: other).device == other)
    }
    #expect(Backends.named("reference")?.name == "reference")
    #expect(Backends.named("cuda") == nil)
  }

  @Test func tensorsKeepTheirDeviceThroughOps() {
    let device = Device(kind: .cpu, index: 1)
    let x = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6], device: device)
    let y = (x * 2 + 1).gelu()
    #expect(y.device == device)
    #expect(x.moved(to: .cpu).device == .cpu)
    #expect(x.moved(to: .cpu).scalars == x.scalars)
  }

  @Test func operandsOnDifferentDevicesTrap() async {
    await #expect(processExitsWith: .failure) {
      let a = Tensor(zeros: [2], device: Device(kind: .cpu, index: 1))
      _ = a + Tensor(zeros: [2])
    }
  }

  @Test func hostAccessRoundTrips() {
    var x = Tensor(zeros: [2, 3])
    x[1, 2] = 5
    #expect(x[1, 2] == 5)
    #expect(x.scalars == [0, 0, 0, 0, 0, 5])
    let shared = x
    x.withUnsafeMutableBufferPointer { $0[0] = 7 }
    #expect(x.scalars[0] == 7 && shared.scalars[0] == 0, "writes copy shared storage first")
    let whole = Tensor(zeros: [2, 3])
    whole.write(Tensor(ones: [2, 1]), alongAxis: 1, at: 1)
    #expect(whole.scalars == [0, 1, 0, 0, 1, 0])
  }
}

@Suite struct DeviceTests {
  @Test func describesParsesAndCodes() throws {
    #expect(Device.cpu == Device(kind: .cpu, index: 0))
    #expect(Device.cpu.description == "cpu:0")
    #expect(Device("cpu") == .cpu)
    #expect(Device("cpu:3") == Device(kind: .cpu, index: 3))
    #expect(Device("cpu:-1") == nil)
    #expect(Device("tpu:0") == nil)
    let encoded = try JSONEncoder().encode([Device(kind: .cpu, index: 2)])
    #expect(String(decoding: encoded, as: UTF8.self) == #"["cpu:2"]"#)
    #expect(try JSONDecoder().decode([Device].self, from: Data(#"["cpu"]"#.utf8)) == [.cpu])
    #expect(throws: DecodingError.self) { try JSONDecoder().decode([Device].self, from: Data(#"["gpu:x"]"#.utf8)) }
  }

  @Test func negativeIndexTraps() async {
    await #expect(processExitsWith: .failure) { _ = Device(kind: .cpu, index: -1) }
  }
}
