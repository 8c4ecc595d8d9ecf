package io.edgeopt.core

import java.math.BigDecimal
import java.math.MathContext
import java.math.RoundingMode
import java.security.MessageDigest

/**
 * The few Python behaviours the bundle format and the cache depend on, reproduced exactly: `str.strip()` /
 * regex `\s` whitespace, code-point string order, `json.dumps(ensure_ascii=True)` escaping and compact documents,
 * `repr(float)`, and UTF-8 with `surrogatepass`.
 */
internal object PyCompat {
    /** Code points for which Python's `str.isspace()` (and so `str.strip()` and regex `\s`) is true. */
    fun isSpace(cp: Int): Boolean = when (cp) {
        in 0x09..0x0D, in 0x1C..0x20, 0x85, 0xA0, 0x1680, in 0x2000..0x200A,
        0x2028, 0x2029, 0x202F, 0x205F, 0x3000 -> true
        else -> false
    }

    /** Python's `str.strip()`: drops leading and trailing [isSpace] characters. */
    fun strip(text: String): String {
        var start = 0
        var end = text.length
        while (start < end && isSpace(text.codePointAt(start))) start += Character.charCount(text.codePointAt(start))
        while (end > start && isSpace(text.codePointBefore(end))) end -= Character.charCount(text.codePointBefore(end))
        return text.substring(start, end)
    }

    /** Python's `sorted()` order for strings: by code point, not by UTF-16 unit as `String.compareTo` does. */
    val codePointOrder: Comparator<String> = Comparator { a, b ->
        val x = a.codePoints().toArray()
        val y = b.codePoints().toArray()
        for (i in 0 until minOf(x.size, y.size)) if (x[i] != y[i]) return@Comparator x[i].compareTo(y[i])
        x.size.compareTo(y.size)
    }

    /** A JSON string literal as Python's `json.dumps(s, ensure_ascii=True)` writes it. */
    fun jsonString(s: String): String = buildString {
        append('"')
        for (c in s) {
            when (c) {
                '"' -> append("\\\"")
                '\\' -> append("\\\\")
                '\n' -> append("\\n")
                '\r' -> append("\\r")
                '\t' -> append("\\t")
                '\b' -> append("\\b")
                '\u000C' -> append("\\f")
                in ' '..'~' -> append(c)
                // UTF-16 units, so an astral character becomes its surrogate pair, as in Python.
                else -> append("\\u").append(String.format("%04x", c.code))
            }
        }
        append('"')
    }

    /** Python's `repr(float)`: the shortest digits that read back to the same double, Python's exponent style. */
    fun floatRepr(x: Double): String {
        require(x.isFinite()) { "JSON has no NaN or Infinity (Python writes with allow_nan=False)" }
        if (x == 0.0) return if (1.0 / x < 0) "-0.0" else "0.0"
        val exact = BigDecimal(x)
        var digits = exact
        for (precision in 1..17) {
            digits = exact.round(MathContext(precision, RoundingMode.HALF_EVEN))
            if (digits.toDouble() == x) break
        }
        val unscaled = digits.unscaledValue().abs().toString().trimEnd('0').ifEmpty { "0" }
        val exponent = digits.precision() - digits.scale() - 1 // decimal exponent of the first digit
        val sign = if (x < 0) "-" else ""
        // Python writes scientific notation below 1e-4 and from 1e16.
        return sign + if (exponent < -4 || exponent >= 16) scientific(unscaled, exponent) else positional(unscaled, exponent)
    }

    private fun positional(digits: String, exponent: Int): String = when {
        exponent < 0 -> "0." + "0".repeat(-exponent - 1) + digits
        digits.length <= exponent + 1 -> digits + "0".repeat(exponent + 1 - digits.length) + ".0"
        else -> digits.substring(0, exponent + 1) + "." + digits.substring(exponent + 1)
    }

    private fun scientific(digits: String, exponent: Int): String {
        val mantissa = if (digits.length == 1) digits else digits[0] + "." + digits.substring(1)
        val sign = if (exponent < 0) "-" else "+"
        return mantissa + "e" + sign + String.format("%02d", kotlin.math.abs(exponent))
    }

    /** UTF-8 of every code point, lone surrogates included (Python's `encode("utf-8", "surrogatepass")`). */
    fun utf8SurrogatePass(s: String): ByteArray {
        val out = java.io.ByteArrayOutputStream(s.length + 16)
        s.codePoints().forEach { cp ->
            when {
                cp < 0x80 -> out.write(cp)
                cp < 0x800 -> { out.write(0xC0 or (cp shr 6)); out.write(0x80 or (cp and 0x3F)) }
                cp < 0x10000 -> {
                    out.write(0xE0 or (cp shr 12)); out.write(0x80 or ((cp shr 6) and 0x3F)); out.write(0x80 or (cp and 0x3F))
                }
                else -> {
                    out.write(0xF0 or (cp shr 18)); out.write(0x80 or ((cp shr 12) and 0x3F))
                    out.write(0x80 or ((cp shr 6) and 0x3F)); out.write(0x80 or (cp and 0x3F))
                }
            }
        }
        return out.toByteArray()
    }

    /**
     * Python's `json.dumps(value, ensure_ascii=True, separators=(",", ":"))` for a document of lists, strings,
     * integers, booleans, finite doubles and nulls (what the fingerprint hashes).
     */
    fun compactJson(value: Any?): String = when (value) {
        null -> "null"
        is String -> jsonString(value)
        is Int, is Long -> value.toString()
        is Boolean -> value.toString() // Python writes True / False as true / false
        is Double -> floatRepr(value)
        is List<*> -> value.joinToString(",", "[", "]") { compactJson(it) }
        else -> throw IllegalArgumentException("compactJson: ${value.javaClass.simpleName} is not a list, string, integer, double or null")
    }

    fun sha256Hex(bytes: ByteArray): String =
        MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }
}
