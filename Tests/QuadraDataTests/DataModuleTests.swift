import Testing

@testable import QuadraData

@Test func placeholderDataModuleBuilds() { #expect(Device.cpu.description == "cpu") }
