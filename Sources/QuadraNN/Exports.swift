@_exported import QuadraAutograd
@_exported import QuadraCore
