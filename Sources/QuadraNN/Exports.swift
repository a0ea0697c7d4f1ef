@_exported import QuadraCore
