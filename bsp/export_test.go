package bsp

// Test-only access to internals from package bsp_test.
var ParseErrorBody = parseErrorBody
