import Testing

@testable import QuadraAutograd

@Suite struct VariableTests {
  @Test func gradientsAccumulateThroughSharedInputs() {
    let x = Variable(Tensor(shape: [3], scalars: [1, 2, 3]), requiresGrad: true)
    // y = x + x, so dy/dx = 2 per element.
    let y = Variable.record(x.value.adding(x.value), inputs: [x, x]) { g in [g, g] }
    y.backward()
    #expect(x.grad?.scalars == [2, 2, 2])
    y.node.map { _ in () }
  }

  @Test func inferenceModeRecordsNothing() {
    let x = Variable(Tensor(shape: [2], scalars: [1, 2]), requiresGrad: true)
    let y = GradientMode.withoutRecording {
      Variable.record(x.value.adding(x.value), inputs: [x]) { g in [g] }
    }
    #expect(y.node == nil)
  }
}
