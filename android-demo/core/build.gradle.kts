// The same sources core/run-tests.sh compiles with kotlinc; this file is for Android Studio.
plugins {
    id("org.jetbrains.kotlin.jvm")
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    // org.json is part of Android; on the JVM the core compiles against Android's own implementation of it.
    compileOnly("com.vaadin.external.google:android-json:0.0.20131108.vaadin1")
    testImplementation("com.vaadin.external.google:android-json:0.0.20131108.vaadin1")
    testImplementation("org.junit.jupiter:junit-jupiter:5.9.2")
    testRuntimeOnly("org.junit.platform:junit-platform-launcher:1.9.1")
    testImplementation("org.xerial:sqlite-jdbc:3.40.1.0")
}

tasks.test {
    useJUnitPlatform()
    // The cache round-trip test asks the Python runtime to read a file the JVM wrote, when the venv exists.
    val python = rootProject.file("../.venv/bin/python")
    if (python.canExecute()) systemProperty("edgeopt.python", python.path)
}
