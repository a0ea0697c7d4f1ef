import Testing

@testable import QuadraIO

@Test func placeholderIOModuleBuilds() { #expect(Device.cpu.description == "cpu") }
