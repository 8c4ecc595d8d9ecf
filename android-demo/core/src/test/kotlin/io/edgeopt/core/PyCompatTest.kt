package io.edgeopt.core

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test

class PyCompatTest {
    @Test
    fun `floats print like Python repr`() {
        // Expected strings printed by Python 3.11 repr().
        val cases = mapOf(
            0.0 to "0.0", -0.0 to "-0.0", 1.0 to "1.0", 0.1 to "0.1", 1e-05 to "1e-05", 1.5e-07 to "1.5e-07",
            0.0001 to "0.0001", 0.00012345 to "0.00012345", 1e16 to "1e+16", 1.2345e16 to "1.2345e+16",
            9999999999999998.0 to "9999999999999998.0", 123.0 to "123.0", 0.9999999999999999 to "0.9999999999999999",
            5e-324 to "5e-324", Double.MAX_VALUE to "1.7976931348623157e+308", 0.30000000000000004 to "0.30000000000000004",
            2.5 to "2.5", -3.75e-10 to "-3.75e-10", 100.0 to "100.0", 1e22 to "1e+22", 0.6931471805599453 to "0.6931471805599453",
        )
        cases.forEach { (x, want) -> assertEquals(want, PyCompat.floatRepr(x), "repr($x)") }
    }

    @Test
    fun `strings escape like json dumps with ensure_ascii`() {
        assertEquals("\"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\\\ \\n\\t\\u007f\"", PyCompat.jsonString("café 😀 \"q\" \\ \n\t\u007f"))
    }

    @Test
    fun `strip and whitespace follow Python str`() {
        assertEquals("a\u200bb", PyCompat.strip("\u001c\u00a0\u3000 a\u200bb\u2029\u0085"))

    }

    @Test
    fun `compact documents print like json dumps with compact separators`() {
        // json.dumps(["a\u00e9", 1, -2, 0.00390625, None, [[], "x"]], separators=(",", ":"))
        assertEquals("[\"a\\u00e9\",1,-2,0.00390625,null,[[],\"x\"]]", PyCompat.compactJson(listOf("aé", 1, -2L, 0.00390625, null, listOf(emptyList<Any>(), "x"))))
    }

    @Test
    fun `sorting is by code point like Python`() {
        // U+FF21 sorts before U+1F600 by code point, after it by UTF-16 unit.
        assertEquals(listOf("\uff21", "😀"), listOf("😀", "\uff21").sortedWith(PyCompat.codePointOrder))
    }
}
